"""Tables of the imaging domain: the index of the local archive (the embedded default PACS)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from rcp.clock import utcnow

__all__ = ["ArchiveInstance"]


class ArchiveInstance(SQLModel, table=True):
    """One stored SOP instance: where its file is, and the study/series attributes QIDO-RS searches on.

    Attributes are copied from the file (PS3.3 Patient, General Study, General Series, SOP Common modules) so that
    searches never open files. No foreign keys: the archive stands apart from the scheduling tables, as a PACS does.
    """

    __tablename__ = "archive_instances"

    sop_uid: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    study_uid: str = Field(sa_column=sa.Column(sa.String(64), nullable=False, index=True))
    series_uid: str = Field(sa_column=sa.Column(sa.String(64), nullable=False, index=True))
    sop_class_uid: str = Field(default="", max_length=64)
    patient_id: str = Field(default="", sa_column=sa.Column(sa.String(64), nullable=False, index=True,
                                                            server_default=""))
    issuer: str = Field(default="", max_length=64)
    patient_name: str = Field(default="", max_length=200)
    patient_birth_date: str = Field(default="", max_length=8)
    #: M, F or O (PS3.3 C.7.1.1); the identity rule compares it.
    patient_sex: str = Field(default="", sa_column=sa.Column(sa.String(16), nullable=False, server_default=""))
    study_date: str = Field(default="", max_length=8)
    study_time: str = Field(default="", max_length=16)
    accession: str = Field(default="", max_length=16)
    study_description: str = Field(default="", max_length=64)
    modality: str = Field(default="", max_length=16)
    series_description: str = Field(default="", max_length=64)
    series_number: int = Field(default=0)
    instance_number: int = Field(default=0)
    frames: int = Field(default=1)
    transfer_syntax: str = Field(default="", max_length=64)
    #: Relative to the archive folder.
    path: str = Field(max_length=300)
    size: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False, server_default="0"))
    stored_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(timezone=True),
                                                                            nullable=False))
