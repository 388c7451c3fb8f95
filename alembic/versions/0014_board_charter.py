"""Board charter: every board gets a coded FRCP type, and organ boards the INCa default required specialties.

What was chosen, and why:

- **The type** (new column ``boards.type_code``) is one concept of JDV_RCP_Appareil_CISIS (an organ board,
  FRCP ORG-117) or JDV_TraitementSoins_FRCP_CISIS (a transversal board, ORG-132); see ``rcp.scheduling.charter``.
  Existing boards only had ``tumour_site``, a code *or* free text, so their type is recognised, in this order:
  ``tumour_site`` is already one of those codes; ``tumour_site`` is a JDV_RCP_Organe_CISIS code, whose system
  (appareil) is taken (a lung board is a thoracic board); a keyword of ``tumour_site``, then of the board's
  name, in French or English ("thoracic", "RCP digestive", "sein", "oncogériatrie"...). A board none of this
  recognises keeps an empty type rather than a guessed one: it is treated as the standard organ board it most
  likely is (``charter.default_required(None)``), and its coordinator's charter page asks for the type.
- **Required specialties**: a board whose list is empty (the old default, which let radiologist + pathologist +
  GP make a quorum) gets its type's default: surgeon, medical oncologist and radiation oncologist for an organ
  board (INCa criteria), the medical oncologist for a haematology board, the geriatric oncologist or the
  palliative-care physician for those transversal boards, and nothing for the other transversal boards. A list a
  coordinator set is kept as it is: it was a deliberate choice, which they can still change on the charter page.

Downgrade drops the type; the required specialties filled in stay (they were valid values before too).

Revision ID: 0014_board_charter
Revises: 0013_people_names
Create Date: 2026-12-03
"""

from __future__ import annotations

import json
import unicodedata

import sqlalchemy as sa

from alembic import op

revision = "0014_board_charter"
down_revision = "0013_people_names"
branch_labels = None
depends_on = None

# Frozen copies (a migration must not change when the code does): rcp.scheduling.charter of this revision.
_ORGAN_TYPES = frozenset({"387910009", "57171008", "81745001", "272673000", "39937001", "76752008", "86762007",
                          "53065001", "90264002", "25087005", "122489005", "312419003", "87784001", "119253004"})
_TRANSVERSAL_TYPES = frozenset({"C3580", "C3303", "C15252", "C63334", "C15747", "ORG-129", "ORG-130", "C16832",
                                "C71326", "C7201"})
_STANDARD = ["surgeon", "medical_oncologist", "radiotherapist"]
_DEFAULTS = {"57171008": ["medical_oncologist"], "ORG-130": ["geriatric_oncologist"], "C15252": ["palliative_care"]}

#: JDV_RCP_Organe_CISIS (1.2.250.1.213.1.1.5.598) code -> its JDV_RCP_Appareil_CISIS system.
_ORGAN_TO_SYSTEM = {
    **dict.fromkeys(("C3211", "C88", "C9357", "C3483", "C3163", "C3167", "C3172", "C3171", "C3174", "C4861",
                     "C9300", "C27262", "C3242"), "57171008"),
    **dict.fromkeys(("MED-237", "4596009", "74262004", "48477009", "21974007", "54066008", "385294005"),
                    "119253004"),
    **dict.fromkeys(("MED-251", "303270005", "32849002", "69695003", "30315005", "15776009", "C12664"), "86762007"),
    **dict.fromkeys(("MED-255", "3120008", "72410000"), "312419003"),
    "306721000": "272673000",
    **dict.fromkeys(("431491007", "64033007", "89837001"), "122489005"),
    **dict.fromkeys(("C94529", "23952005", "71252005", "15497006"), "53065001"),
    **dict.fromkeys(("18911002", "41216001", "40689003"), "90264002"),
    **dict.fromkeys(("21483005", "84782009"), "25087005"),
    **dict.fromkeys(("23451007", "69748006"), "387910009"),
}

#: Word prefixes (lower case, no accents) that name a board's type, most specific first.
_KEYWORDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("oncogeriatr", "geriatr"), "ORG-130"),
    (("oncogenet", "genetic"), "ORG-129"),
    (("palliati",), "C15252"),
    (("support",), "C15747"),
    (("douleur", "pain"), "C3303"),
    (("fertilit",), "C71326"),
    (("rare",), "C7201"),
    (("hemato", "haemato", "lymphom", "leucem", "leukaem", "leukem", "myelom"), "57171008"),
    (("thora", "thorax", "poumon", "pulmon", "lung", "pneumo", "bronch", "pleur"), "312419003"),
    (("digest", "colo", "rect", "hepat", "foie", "liver", "pancrea", "gastr", "oesopha", "esopha"), "86762007"),
    (("sein", "breast", "senolog", "mamm"), "76752008"),
    (("prostat", "testic", "penis", "penien"), "90264002"),
    (("uro", "rein", "renal", "kidney", "vessie", "bladder"), "122489005"),
    (("gyn", "ovai", "ovar", "uter", "vulv"), "53065001"),
    (("orl", "vads", "cervico", "head", "laryn", "pharyn"), "119253004"),
    (("neuro", "cerveau", "cerebr", "brain", "snc", "cns", "glio"), "25087005"),
    (("derma", "peau", "skin", "cutan", "melanom"), "39937001"),
    (("sarcom",), "87784001"),
    (("osseu", "bone"), "272673000"),
    (("thyro", "endocrin", "surren", "adrenal"), "387910009"),
    (("ophtalm", "ophthalm", "oeil", "eye", "ocul"), "81745001"),
)


def _words(text: str) -> list[str]:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return "".join(ch if ch.isalnum() else " " for ch in plain).split()


def _from_words(text: str) -> str:
    words = _words(text)
    for prefixes, code in _KEYWORDS:
        if any(word.startswith(prefixes) for word in words):
            return code
    return ""


def recognise(tumour_site: str, name: str) -> str:
    """The board's type code from what the board held before this revision, or "" (module docstring)."""
    site = tumour_site.strip()
    if site in _ORGAN_TYPES or site in _TRANSVERSAL_TYPES:
        return site
    if site in _ORGAN_TO_SYSTEM:
        return _ORGAN_TO_SYSTEM[site]
    return _from_words(site) or _from_words(name)


def required_for(type_code: str) -> list[str]:
    if type_code in _DEFAULTS:
        return list(_DEFAULTS[type_code])
    if type_code in _TRANSVERSAL_TYPES:
        return []
    return list(_STANDARD)  # an organ board, or one whose type was not recognised


def upgrade() -> None:
    with op.batch_alter_table("boards") as batch:
        batch.add_column(sa.Column("type_code", sa.String(20), nullable=False, server_default=""))
    connection = op.get_bind()
    boards = sa.table("boards", sa.column("id", sa.Integer), sa.column("name", sa.String),
                      sa.column("tumour_site", sa.String), sa.column("type_code", sa.String),
                      sa.column("required_specialties", sa.JSON))
    for board_id, name, site, required in connection.execute(
            sa.select(boards.c.id, boards.c.name, boards.c.tumour_site, boards.c.required_specialties)).all():
        type_code = recognise(site or "", name or "")
        listed = json.loads(required) if isinstance(required, str) else (required or [])
        values: dict[str, object] = {"type_code": type_code}
        if not listed:
            values["required_specialties"] = required_for(type_code)
        connection.execute(sa.update(boards).where(boards.c.id == board_id).values(**values))


def downgrade() -> None:
    with op.batch_alter_table("boards") as batch:
        batch.drop_column("type_code")
