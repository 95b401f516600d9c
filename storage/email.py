"""Outgoing e-mail: one sink interface, SMTP when a server is configured, otherwise rows in
`sent_emails` that developers and tests read.

Callers send after their transaction commits; a sink's failure is the caller's to log, never a
reason to undo what was committed.
"""

from __future__ import annotations

import asyncio
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

import asyncpg


@dataclass(frozen=True)
class Email:
    """One message to one address."""

    to: str
    subject: str
    body: str


class EmailSink(Protocol):
    """Where e-mail goes."""

    async def send(self, email: Email) -> None: ...


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach an SMTP server (app/ fills this from the Config)."""

    host: str
    port: int
    username: str
    password: str
    starttls: bool
    sender: str
    timeout: float = 10.0


@dataclass(frozen=True)
class SmtpSink:
    """Sends through an SMTP server, one connection per message, in a thread (smtplib blocks)."""

    settings: SmtpSettings

    async def send(self, email: Email) -> None:
        await asyncio.to_thread(self._send, email)

    def _send(self, email: Email) -> None:
        s = self.settings
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = s.sender, email.to, email.subject
        message.set_content(email.body)
        with smtplib.SMTP(s.host, s.port, timeout=s.timeout) as smtp:
            if s.starttls:
                smtp.starttls()
            if s.username:
                smtp.login(s.username, s.password)
            smtp.send_message(message)


@dataclass(frozen=True)
class TableSink:
    """Keeps each message as a row of `sent_emails`: the development and test sink."""

    pool: asyncpg.Pool

    async def send(self, email: Email) -> None:
        await self.pool.execute(
            "INSERT INTO sent_emails (to_address, subject, body) VALUES ($1, $2, $3)",
            email.to, email.subject, email.body,
        )


def make_sink(pool: asyncpg.Pool, smtp: SmtpSettings | None) -> EmailSink:
    """SMTP when configured, otherwise the table."""
    return SmtpSink(smtp) if smtp is not None else TableSink(pool)


async def sent_to(conn: asyncpg.Pool | asyncpg.Connection, address: str, limit: int = 20) -> list[Email]:
    """What the table sink holds for an address, newest first."""
    rows = await conn.fetch(
        "SELECT to_address, subject, body FROM sent_emails WHERE lower(to_address) = lower($1)"
        " ORDER BY id DESC LIMIT $2",
        address, limit,
    )
    return [Email(r["to_address"], r["subject"], r["body"]) for r in rows]
