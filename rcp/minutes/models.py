"""Tables of the minutes domain: the draft being written, the signed versions, and the write-back queue.

- ``decision_drafts``: one row per case; ``fields`` maps each edited field to ``{"value", "version",
  "editor_id", "updated_at"}``. ``revision`` (the sum of field versions) is the row's optimistic lock: an update
  names the revision it read, so two concurrent saves of different fields never overwrite each other.
- ``decision_versions``: signed versions, inserted once and never updated (a database trigger refuses UPDATE, see
  migration 0004). ``(case_id, number)`` is unique, which also makes a double signature race fail cleanly.
- ``decision_withdrawals``: a signed version withdrawn as entered in error (who, when, why), one at most per
  version, inserted once and never updated or deleted (triggers of migration 0019); the version itself is untouched.
- ``writeback_jobs``: per signed version, the DICOM objects still to store in the patient's imaging file (KOS,
  encapsulated PDF, and once it is replaced or withdrawn the IOCM rejection note hiding them). A PACS that refuses
  the write leaves the job failed and retried; the signature stands.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from rcp.clock import utcnow
from rcp.db import timestamp

__all__ = ["DecisionDraft", "DecisionVersion", "DecisionWithdrawal", "WritebackJob", "WritebackKind",
           "WritebackStatus"]



class WritebackKind(StrEnum):
    #: DICOM Key Object Selection (IHE Key Image Note), titled (DCM 128203 "For Tumor Board").
    kos = "kos"
    #: The signed fiche as Encapsulated PDF Storage.
    pdf = "pdf"
    #: An IHE IOCM rejection note (DCM 113001) hiding this version's KOS and PDF: it was replaced or withdrawn.
    reject = "reject"
    #: The same titled (DCM 113037) "Rejected for Patient Safety Reasons": withdrawn as the wrong patient's.
    reject_patient = "reject_pt"


class WritebackStatus(StrEnum):
    pending = "pending"
    done = "done"
    #: The last attempt failed; retried after ``next_attempt_at`` until the attempts run out.
    failed = "failed"
    #: Never attempted again: the study is not the fiche's patient's (``rcp.minutes.dicom.WrongPatient``). Nothing
    #: was stored; ``last_error`` says which identity fields disagree, and the coordinator fixes the case's studies.
    refused = "refused"


class DecisionDraft(SQLModel, table=True):
    __tablename__ = "decision_drafts"

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(
        sa_column=sa.Column(sa.ForeignKey("cases.id", ondelete="CASCADE"), nullable=False, unique=True)
    )
    fields: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))
    revision: int = Field(default=0)
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp(nullable=False))


class DecisionVersion(SQLModel, table=True):
    __tablename__ = "decision_versions"
    __table_args__ = (sa.UniqueConstraint("case_id", "number", name="uq_decision_version_case_number"),)

    id: int | None = Field(default=None, primary_key=True)
    # RESTRICT: deleting a case (or its meeting) must not take signed decisions with it.
    case_id: int = Field(
        sa_column=sa.Column(sa.ForeignKey("cases.id", ondelete="RESTRICT"), nullable=False, index=True)
    )
    number: int
    content: dict[str, Any] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    sha256: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    signed_by: int = Field(sa_column=sa.Column(sa.ForeignKey("users.id", ondelete="RESTRICT"), nullable=False))
    signed_at: datetime = Field(sa_column=timestamp(nullable=False))
    replaces_id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.ForeignKey("decision_versions.id", ondelete="RESTRICT"), nullable=True),
    )
    reason: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))


class DecisionWithdrawal(SQLModel, table=True):
    """A signed version withdrawn because it was entered in error (HL7 MDM^T11, FHIR entered-in-error).

    Its own record pointing at the version: the signed version never changes (DESIGN section 6).
    ``wrong_patient`` says the document was filed under another patient (IHE IOCM: DCM 113037 instead of 113001).
    """

    __tablename__ = "decision_withdrawals"

    id: int | None = Field(default=None, primary_key=True)
    version_id: int = Field(
        sa_column=sa.Column(sa.ForeignKey("decision_versions.id", ondelete="RESTRICT"), nullable=False, unique=True)
    )
    case_id: int = Field(
        sa_column=sa.Column(sa.ForeignKey("cases.id", ondelete="RESTRICT"), nullable=False, index=True)
    )
    withdrawn_by: int = Field(sa_column=sa.Column(sa.ForeignKey("users.id", ondelete="RESTRICT"), nullable=False))
    withdrawn_at: datetime = Field(sa_column=timestamp(nullable=False))
    reason: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    wrong_patient: bool = Field(default=False, sa_column=sa.Column(sa.Boolean, nullable=False,
                                                                   server_default=sa.false()))


class WritebackJob(SQLModel, table=True):
    __tablename__ = "writeback_jobs"
    __table_args__ = (sa.UniqueConstraint("version_id", "kind", name="uq_writeback_version_kind"),)

    id: int | None = Field(default=None, primary_key=True)
    version_id: int = Field(
        sa_column=sa.Column(sa.ForeignKey("decision_versions.id", ondelete="RESTRICT"), nullable=False, index=True)
    )
    kind: str = Field(max_length=10)
    status: str = Field(default=WritebackStatus.pending, max_length=10)
    attempts: int = Field(default=0)
    last_error: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    #: SOP Instance UID of the stored object, so a retry after a lost acknowledgement stores the same instance.
    stored_sop_uid: str = Field(default="", max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp(nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp(nullable=False))
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_column=timestamp(nullable=False, index=True))
