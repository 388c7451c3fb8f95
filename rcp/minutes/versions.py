"""Drafts with per-field versions, and signed versions that never change: the pure core of the minutes.

Writing in the room is optimistic: each draft field carries a version number. An edit says which version it was
based on; if someone else changed the field meanwhile, the edit is refused with a :class:`FieldConflict` that
carries the current value, so the UI shows both texts instead of silently keeping the last one typed.

Signing freezes the fiche's canonical JSON (sorted keys, no insignificant whitespace, UTF-8) with its SHA-256,
who signed and when. A correction never overwrites: it is a new version that names the one it replaces and why.

Who signs is the signed-in account, never a name typed on the fiche: a physician (an account with a medical
specialty; a board secretary never signs, whatever its role) invited to the meeting and present when the case was
discussed (an attendee of the fiche). The typed ``responsible_physician`` is the physician who informs the
patient; the documents name the signer from the account (:attr:`SignedVersion.signer`).

    >>> from datetime import UTC
    >>> NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    >>> draft = Draft(case_id=1).edit("question", "Chirurgie ?", base_version=0, editor_id=7, at=NOW)
    >>> draft.get("question").version
    1
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any

from rcp.errors import Conflict, Forbidden, Invalid
from rcp.minutes.fiche import DRAFT_DEFAULTS, DRAFT_FIELDS, Fiche, Physician, parse_draft_field
from rcp.scheduling.quorum import Quorum
from rcp.scheduling.specialties import SPECIALTIES, is_physician

__all__ = [
    "AlreadySigned",
    "Draft",
    "DraftField",
    "FieldConflict",
    "NotAllowedToSign",
    "QuorumNotMet",
    "SignedVersion",
    "StaleDraft",
    "TreatmentNotCovered",
    "amend",
    "canonical_json",
    "check_signer",
    "content_sha256",
    "freeze",
    "sign",
    "thaw",
]


# -- errors ----------------------------------------------------------------------------------------------------

#: English specialty names for the refusals (the pages translate them with the specialty's key).
_LABELS = {s.key: s.label.lower() for s in SPECIALTIES}


class FieldConflict(Conflict):
    """Someone changed this field since the editor loaded it. ``current`` is what is stored now."""

    code = "field_conflict"

    def __init__(self, name: str, current: DraftField) -> None:
        super().__init__(
            "Someone else changed this field while you were typing: compare both texts, then save again "
            f"based on version {current.version}.",
            fields={name: f"changed by someone else (now version {current.version})"},
        )
        self.field = name
        self.current = current


class StaleDraft(Conflict):
    code = "stale_draft"


class QuorumNotMet(Conflict):
    code = "quorum_not_met"

    def __init__(self, quorum: Quorum) -> None:
        parts = []
        if quorum.missing:
            parts.append("missing specialties: " + ", ".join(quorum.missing))
        if quorum.short_by:
            parts.append(f"{quorum.short_by} more physician specialt{'y' if quorum.short_by == 1 else 'ies'} needed")
        super().__init__(
            "The quorum is not met (" + "; ".join(parts or ["not enough specialties"]) + "): the decision cannot "
            "be signed. Bring in the missing specialists or defer the case to the next meeting.",
            fields={"attendees": "; ".join(parts)},
        )
        self.quorum = quorum


class TreatmentNotCovered(Conflict):
    """The proposal names a treatment that no physician of its specialty discussed (INCa: not a valid proposal).

    Refused, not merely flagged: INCa's criteria make such a proposal invalid, and a board's own practice is to
    take the case again with the specialist, or to ask for that specialist's opinion first. The way out is in the
    message: bring the specialist in (before the discussion ends), propose "further investigations" (the
    specialist's opinion) instead, or defer the case to the next meeting. No justification can stand in for the
    missing specialist, so none is asked for.
    """

    code = "treatment_specialty_missing"

    def __init__(self, fiche: Fiche) -> None:
        gaps = fiche.treatment_gaps()
        parts = [f"{fiche.treatment_display(g)} ({g.code}) needs a "
                 + " or a ".join(_LABELS.get(k, k) for k in g.needs) for g in gaps]
        super().__init__(
            "The proposal cannot be signed: nobody in the quorum of this discussion answers for a treatment it "
            "proposes (" + "; ".join(parts) + "). INCa: the quorum gives an opinion on every treatment it proposes. "
            "Bring the specialist in, propose further investigations (their opinion) instead, or defer the case "
            "to the next meeting.",
            fields={"proposal.treatments": "; ".join(
                f"{g.code} needs {' or '.join(g.needs)}" for g in gaps)},
        )
        self.gaps = gaps


class NotAllowedToSign(Forbidden):
    code = "not_allowed_to_sign"


class AlreadySigned(Conflict):
    code = "already_signed"


# -- canonical content -----------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, MappingProxyType):
        return dict(value)
    raise TypeError(f"not JSON content: {type(value).__name__}")


def canonical_json(content: Mapping[str, Any]) -> bytes:
    """RFC 8785-like canonical form: sorted keys, ``,``/``:`` separators, UTF-8 text (no ``\\u`` escapes), no NaN.

    Content holds only strings, integers, booleans, null, lists and objects (no floats), so this is stable across
    Python versions and databases that round-trip JSON.
    """
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                      default=_plain).encode("utf-8")


def content_sha256(content: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(content)).hexdigest()


def freeze(value: Any) -> Any:
    """A read-only deep copy: objects become mapping proxies, lists become tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """A plain, mutable JSON copy of frozen content (for templates, exports, the database)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [thaw(v) for v in value]
    return value


# -- drafts ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DraftField:
    value: Any
    #: 0 = never edited (the default value); each accepted edit adds one.
    version: int = 0
    editor_id: int | None = None
    updated_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {"value": thaw(self.value), "version": self.version, "editor_id": self.editor_id,
                "updated_at": self.updated_at.isoformat() if self.updated_at else None}


@dataclass(frozen=True)
class Draft:
    """The decision being written for one case: every editable field with its own version."""

    case_id: int
    fields: Mapping[str, DraftField] = field(default_factory=dict)

    def get(self, name: str) -> DraftField:
        if name not in DRAFT_FIELDS:
            raise Invalid("This decision has no such field.", fields={name: "unknown field"})
        return self.fields.get(name) or DraftField(value=freeze(DRAFT_DEFAULTS.get(name)))

    @property
    def revision(self) -> int:
        """How many edits the draft has seen: a signer must have seen this revision (no signing a stale view)."""
        return sum(f.version for f in self.fields.values())

    def values(self) -> dict[str, Any]:
        return {name: thaw(self.get(name).value) for name in DRAFT_FIELDS}

    def versions(self) -> dict[str, int]:
        return {name: self.get(name).version for name in DRAFT_FIELDS}

    @property
    def updated_at(self) -> datetime | None:
        stamps = [f.updated_at for f in self.fields.values() if f.updated_at is not None]
        return max(stamps) if stamps else None

    def edit(self, name: str, value: Any, *, base_version: int, editor_id: int, at: datetime) -> Draft:
        """The draft with ``name`` set to ``value``, if the editor saw the current version of that field.

        Saving the value already stored is not a conflict (two people typing the same correction). Values are
        checked (:func:`rcp.minutes.fiche.parse_draft_field`) so a draft can always become a fiche.
        """
        parse_draft_field(name, value)
        current = self.get(name)
        if base_version != current.version:
            if thaw(current.value) == value:
                return self
            raise FieldConflict(name, current)
        updated = DraftField(value=freeze(value), version=current.version + 1, editor_id=editor_id, updated_at=at)
        return replace(self, fields=MappingProxyType({**self.fields, name: updated}))

    def as_json(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "revision": self.revision,
                "fields": {name: self.get(name).as_json() for name in DRAFT_FIELDS}}


# -- signed versions -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedVersion:
    """A frozen version of a case's decision. ``replaces`` is the number of the version it corrects."""

    number: int
    content: Mapping[str, Any]
    sha256: str
    signed_by: int
    signed_at: datetime
    replaces: int | None = None
    reason: str = ""
    #: The account ``signed_by`` as documents name it (PDF, EPR author, KOS observer), loaded from the users table;
    #: not part of the signed content (the content is what the board decided, the account is who signed it).
    signer: Physician | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "content", freeze(self.content))

    @property
    def canonical(self) -> bytes:
        return canonical_json(self.content)

    def verify(self) -> bool:
        """Whether the content still matches its hash (storage corruption or tampering shows here)."""
        return content_sha256(self.content) == self.sha256

    def fiche(self) -> Fiche:
        return Fiche.from_content(thaw(self.content))


def check_signer(fiche: Fiche, signer: Physician, *, invited_ids: Collection[int]) -> None:
    """Refuse (:class:`NotAllowedToSign`) unless ``signer`` (the signed-in account) may sign ``fiche``.

    A physician: the account has a medical specialty (rcp.scheduling.specialties; "secretary" and "nurse
    coordinator" are not), invited to the meeting, and present when the case was discussed (one of the fiche's
    attendees). Nothing here depends on a password, so a refusal tells nothing about one.
    """
    if signer.user_id is None or signer.user_id not in invited_ids:
        raise NotAllowedToSign("Only a physician invited to this meeting can sign its decisions.")
    if not is_physician(signer.specialty):
        raise NotAllowedToSign(
            "Only a physician signs a decision, and this account has no medical specialty: ask a physician who "
            "took part in the discussion to sign."
        )
    if signer.user_id not in {a.user_id for a in fiche.attendees}:
        raise NotAllowedToSign(
            "Only a physician who was present when this case was discussed can sign it: ask one of the attendees "
            "to sign."
        )


def _check_quorum(fiche: Fiche) -> None:
    # INCa: a proposal is valid only with >= 3 physicians of different specialties incl. the board's required ones,
    # and with the specialty of each treatment it proposes among them.
    quorum = fiche.quorum()
    if not quorum.met:
        raise QuorumNotMet(quorum)
    if fiche.treatment_gaps():
        raise TreatmentNotCovered(fiche)


def sign(
    fiche: Fiche,
    *,
    draft: Draft,
    seen_revision: int,
    signer: Physician,
    invited_ids: Collection[int],
    existing: Sequence[SignedVersion],
    at: datetime,
) -> SignedVersion:
    """Freeze ``fiche`` as version 1 of its case, signed by the account ``signer``.

    Refused (with a reason the UI can show) when: the case is already signed (use :func:`amend`), the signer saw
    an older draft than the stored one, the signer may not sign (:func:`check_signer`), the fiche is incomplete,
    the quorum is not met, or a proposed treatment's specialty took no part (:class:`TreatmentNotCovered`).
    """
    if existing:
        raise AlreadySigned(
            f"This decision is already signed (version {max(v.number for v in existing)}): "
            "to change it, write a correction with a reason."
        )
    if seen_revision != draft.revision:
        raise StaleDraft(
            f"The decision changed since you last saw it (revision {draft.revision}, you saw {seen_revision}): "
            "reread it, then sign again."
        )
    check_signer(fiche, signer, invited_ids=invited_ids)
    fiche.check_complete()
    _check_quorum(fiche)
    content = fiche.to_content()
    assert signer.user_id is not None
    return SignedVersion(number=1, content=content, sha256=content_sha256(content), signed_by=signer.user_id,
                         signed_at=at, signer=signer)


def amend(
    fiche: Fiche,
    *,
    replaces: SignedVersion,
    existing: Sequence[SignedVersion],
    reason: str,
    signer: Physician,
    invited_ids: Collection[int],
    at: datetime,
) -> SignedVersion:
    """A correction of the latest signed version: a new number, ``replaces`` set, and the reason kept.

    Signed like a first version (:func:`check_signer`): the physician correcting was there when the case was
    discussed (the attendees of the version it replaces)."""
    if not reason.strip():
        raise Invalid("Say why the decision is corrected.", fields={"reason": "required"})
    if len(reason) > 2000:
        raise Invalid("The reason is too long.", fields={"reason": "at most 2000 characters"})
    latest = max(existing, key=lambda v: v.number, default=None)
    if latest is None or latest.number != replaces.number or latest.sha256 != replaces.sha256:
        raise StaleDraft(
            "Only the latest signed version can be corrected: reload the decision to see the current version."
        )
    check_signer(fiche, signer, invited_ids=invited_ids)
    fiche.check_complete()
    _check_quorum(fiche)
    content = fiche.to_content()
    digest = content_sha256(content)
    if digest == replaces.sha256:
        raise Conflict("The correction changes nothing: say which fields change (changes) and their new values.")
    assert signer.user_id is not None
    return SignedVersion(number=replaces.number + 1, content=content, sha256=digest, signed_by=signer.user_id,
                         signed_at=at, replaces=replaces.number, reason=reason, signer=signer)
