from __future__ import annotations

import io
import re
from collections.abc import Callable
from datetime import date, datetime
from importlib import resources
from typing import Any

import pikepdf
import pypdf

from rcp.minutes.fiche import Fiche, Physician
from rcp.minutes.render import MinutesItem, fiche_html, fiche_pdf, fiche_pdf_async, minutes_html, minutes_pdf
from rcp.minutes.versions import Draft, sign

Make = Callable[..., dict[str, Any]]
#: The account that signs (as rcp.minutes.store.signer_account loads it): an attendee of the fiche, user 2.
SIGNER = Physician(name="Dr Bruno Oncologue", specialty="medical_oncologist", user_id=2)


def _text(pdf: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages)


def _signed(content: Make, now: datetime, **overrides: Any) -> tuple[Fiche, Any]:
    fiche = Fiche.from_content(content(**overrides))
    version = sign(fiche, draft=Draft(case_id=fiche.case_id), seen_revision=0, signer=SIGNER,
                   invited_ids={1, 2, 3, 4}, existing=[], at=now)
    return fiche, version


def test_pdf_keeps_accents_and_prints_the_hash(content: Make, now: datetime) -> None:
    fiche, version = _signed(content, now, comments="Cœur à surveiller — échographie « ETT » prévue.")
    pdf = fiche_pdf(fiche, version)
    assert pdf.startswith(b"%PDF-")
    text = _text(pdf)
    for fragment in ("LEFÈVRE", "Hélène Françoise", "Chirurgie conservatrice d'emblée", "Cœur à surveiller",
                     "« ETT »", "Tumeur maligne du quadrant supéro-interne du sein", "intervention chirurgicale",
                     "Quorum atteint", "Cas discuté", "Dr Céline Radiothérapeute", "279035121518989"):
        assert fragment in text, fragment
    # The hash is on the page (footer of every page and the signature block); text extraction may wrap it.
    assert version.sha256 in text.replace("\n", "").replace(" ", "")
    with pikepdf.open(io.BytesIO(pdf)) as document, document.open_metadata() as xmp:
        assert xmp["pdf:Keywords"] == f"sha256:{version.sha256}"


def test_same_version_renders_identically(content: Make, now: datetime) -> None:
    fiche, version = _signed(content, now)
    assert fiche_pdf(fiche, version) == fiche_pdf(fiche, version)


def test_draft_pdf_says_it_is_not_signed(content: Make) -> None:
    fiche = Fiche.from_content(content())
    assert "BROUILLON — non signé" in _text(fiche_pdf(fiche))


def test_an_empty_draft_renders_no_value(content: Make) -> None:
    """Issue 15, item 3: the fiche of a draft nobody filled shows no status, proposal, answer or placeholder."""
    from rcp.minutes.fiche import DRAFT_DEFAULTS, DRAFT_FIELDS

    empty = content(**{name: DRAFT_DEFAULTS.get(name) for name in DRAFT_FIELDS})
    fiche = Fiche.from_content(empty)
    html = fiche_html(fiche)
    pdf = _text(fiche_pdf(fiche))
    # "Non" stays: the clinical trial's unticked box reads "not proposed", as on the paper fiche.
    for absent in ("Cas discuté", "Cas enregistré", "Chirurgie", "Non renseigné", "Oui"):
        assert not re.search(rf"\b{absent}\b", html) and not re.search(rf"\b{absent}\b", pdf), absent
    assert "BROUILLON — non signé" in pdf


def test_long_text_flows_over_pages(content: Make, now: datetime) -> None:
    fiche, version = _signed(content, now, clinical_summary="Évolution lente. " * 600)
    pdf = fiche_pdf(fiche, version)
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) >= 3
    assert all(version.sha256[:16] in page.extract_text().replace("\n", "") for page in reader.pages)


async def test_pdf_renders_in_a_thread(content: Make, now: datetime) -> None:
    fiche, version = _signed(content, now)
    assert (await fiche_pdf_async(fiche, version)).startswith(b"%PDF-")


def test_minutes_pdf_has_every_case(content: Make, now: datetime) -> None:
    first, v1 = _signed(content, now)
    second = Fiche.from_content(content(case_id=13, patient={"family_name": "Øster", "given_names": "Zoë",
                                                             "local_id": "IPP9"}))
    pdf = minutes_pdf("RCP Sein", date(2026, 11, 23), [MinutesItem(first, v1), MinutesItem(second)])
    text = _text(pdf)
    assert "LEFÈVRE" in text and "ØSTER" in text and "Zoë" in text


def test_fiche_html_escapes_and_shows_everything(content: Make, now: datetime) -> None:
    fiche, version = _signed(content, now, comments="<script>alert(1)</script> tumeur ≥ 2 cm")
    html = fiche_html(fiche, version)
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    for fragment in ("LEFÈVRE", "Quorum atteint", "intervention chirurgicale", version.sha256,
                     "Lésion du QSI droit", "hors quorum", "RPPS 10001234567"):
        assert fragment in html, fragment


def test_minutes_html_lists_signed_and_unsigned(content: Make, now: datetime) -> None:
    first, v1 = _signed(content, now)
    second = Fiche.from_content(content(case_id=13, proposal=None))
    html = minutes_html("RCP Sein", date(2026, 11, 23), [MinutesItem(first, v1), MinutesItem(second)])
    assert html.count('class="fiche"') == 2
    assert "non signé" in html and v1.sha256 in html


def test_the_signature_line_names_the_signer_account(content: Make, now: datetime) -> None:
    fiche, version = _signed(content, now, responsible_physician={"name": "Dr Amélie Rousseau", "user_id": 3})
    signature = fiche_html(fiche, version).split('class="signature signed">', 1)[1].split("</p>", 1)[0]
    assert "Dr Bruno Oncologue" in signature and "Rousseau" not in signature
    first_page = _text(fiche_pdf(fiche, version)).split("\n")
    assert any("Dr Bruno Oncologue" in line and "Version 1" in line for line in first_page)


def _fonts(document: pikepdf.Pdf) -> list[pikepdf.Dictionary]:
    """Every font dictionary the pages use, a composite (Type0) font's descendant included."""
    fonts = []
    for page in document.pages:
        for font in page.Resources.get("/Font", pikepdf.Dictionary()).values():
            fonts.append(font)
            fonts.extend(font.get("/DescendantFonts", []))
    return fonts


def assert_pdfa_2b(pdf: bytes) -> None:
    """What ISO 19005-2 level B asks of the file that can be read back here (no PDF/A validator runs here):
    version, file identifier, no encryption, XMP with the PDF/A identification, an sRGB output intent with its
    embedded profile, and every font embedded."""
    icc = (resources.files("rcp.minutes") / "color" / "sRGB2014.icc").read_bytes()
    with pikepdf.open(io.BytesIO(pdf)) as document:
        assert document.pdf_version >= "1.4"
        assert len(document.trailer.ID) == 2 and not document.is_encrypted  # 6.1.3
        with document.open_metadata() as xmp:  # 6.6.4
            assert (xmp["pdfaid:part"], xmp["pdfaid:conformance"]) == ("2", "B")
            assert xmp["dc:title"] and xmp["xmp:CreateDate"]
        (intent,) = document.Root.OutputIntents  # 6.2.3
        assert intent.S == "/GTS_PDFA1" and intent.OutputConditionIdentifier == "sRGB"
        assert intent.DestOutputProfile.N == 3 and intent.DestOutputProfile.read_bytes() == icc
        fonts = _fonts(document)
        assert fonts
        for font in fonts:  # 6.2.11.4: every font program embedded
            if font.Subtype == "/Type0":
                continue  # its descendant carries the descriptor
            descriptor = font.FontDescriptor
            assert any(key in descriptor for key in ("/FontFile", "/FontFile2", "/FontFile3")), font.BaseFont


def test_fiche_and_minutes_pdfs_are_built_as_pdfa_2b(content: Make, now: datetime) -> None:
    fiche, version = _signed(content, now)
    assert_pdfa_2b(fiche_pdf(fiche, version))
    assert_pdfa_2b(fiche_pdf(fiche))  # a draft too
    assert_pdfa_2b(minutes_pdf("RCP Sein", date(2026, 11, 23), [MinutesItem(fiche, version)]))
    with pikepdf.open(io.BytesIO(fiche_pdf(fiche, version))) as document, document.open_metadata() as xmp:
        # The dates are the signature's, so a version renders to the same bytes (see the test above).
        assert xmp["xmp:CreateDate"] == xmp["xmp:ModifyDate"] == "2026-11-23T15:30:00+00:00"
