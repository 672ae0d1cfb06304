"""The outbox table's model. The table, its index and grants live in migrations/ (0002)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models import Base


class MailOutbox(Base):
    __tablename__ = "mail_outbox"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    created_at: Mapped[datetime]
    to_address: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)
    # Sealed JSON {"text", "html"} (see app.mail.sealing); NULL once delivered.
    body: Mapped[bytes | None]
    key_id: Mapped[bytes]
    attempts: Mapped[int]
    next_attempt_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
