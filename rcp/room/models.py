"""The room's table: the event log, one row per sequenced event of a meeting's room."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

__all__ = ["RoomEvent"]


class RoomEvent(SQLModel, table=True):
    """One room event. ``(meeting_id, seq)`` is unique: the database allocates the room-wide sequence.

    A node appends event ``n + 1`` only if its state is at ``n``; if another node got there first the insert
    fails on the unique constraint, the node catches up from this table and decides again (optimistic
    concurrency), so numbers never repeat and never skip, whatever the number of nodes.
    """

    __tablename__ = "room_events"
    __table_args__ = (sa.UniqueConstraint("meeting_id", "seq", name="uq_room_events_meeting_seq"),)

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(
        sa_column=sa.Column(sa.ForeignKey("meetings.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    seq: int = Field(nullable=False)
    type: str = Field(max_length=40)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))
    #: The user who caused it; None for the server (grace period, lost node).
    actor_id: int | None = Field(default=None, sa_column=sa.Column(sa.Integer, nullable=True))
    at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
