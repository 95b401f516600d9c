"""The password-reset consumer: a `password_reset_requested` event becomes a single-use token,
stored hashed, and an e-mail carrying it, when the address belongs to an active account; for any
other address nothing happens, and the client was answered the same either way."""

from __future__ import annotations

import logging

import asyncpg

import events
from storage import email, outbox, safety, tokens
from storage.outbox import Event

log = logging.getLogger("glint.safety")


class PasswordResetConsumer:
    """Mints and mails reset tokens."""

    name = "password_reset"
    topics = ("accounts",)

    def __init__(self, pool: asyncpg.Pool, sink: email.EmailSink, ttl_seconds: int, public_url: str = "") -> None:
        self.pool, self.sink, self.ttl = pool, sink, ttl_seconds
        self.link = public_url.rstrip("/") + "/reset?token=" if public_url else ""

    async def handle(self, event: Event) -> None:
        """Mail a token for a known address; other events and unknown addresses are skipped."""
        if event.type != "password_reset_requested":
            return
        body = outbox.body_of(event, events.PasswordResetRequested)
        user = await safety.active_user_by_email(self.pool, body.email)
        if user is None:
            return
        token = tokens.new_token()
        async with self.pool.acquire() as conn, conn.transaction():
            await safety.add_reset_txn(conn, user["id"], tokens.hash_token(token), self.ttl)
        minutes = self.ttl // 60
        await self.sink.send(email.Email(
            to=user["email"], subject="Reset your glint password",
            body=(f"Your password reset token: {token}\n\nIt works once, within {minutes} minutes: "
                  + (f"open {self.link}{token} or " if self.link else "")
                  + "send it to POST /api/accounts/password-reset/confirm/ as {\"token\": ..., \"new_password\": ...}.\n"
                  "If you did not ask for this, ignore this message; your password is unchanged."),
        ))
