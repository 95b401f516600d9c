"""The SMTP e-mail sink against a real (tiny, in-test) SMTP server."""

from __future__ import annotations

import asyncio
import email as email_lib
import re
from email import policy

from app.main import create_app
from tests.conftest import make_config, wait_for
from tests.support import register


class SmtpServer:
    """Just enough of RFC 5321 for smtplib: EHLO, MAIL, RCPT, DATA, QUIT; keeps what it received."""

    def __init__(self) -> None:
        self.messages: list[email_lib.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 test ESMTP\r\n")
        sender, recipients = "", []
        while line := await reader.readline():
            verb = line.decode().strip().split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                writer.write(b"250 test\r\n")
            elif verb == "MAIL":
                sender = line.decode().strip()
                writer.write(b"250 OK\r\n")
            elif verb == "RCPT":
                recipients.append(line.decode().strip())
                writer.write(b"250 OK\r\n")
            elif verb == "DATA":
                writer.write(b"354 go ahead\r\n")
                data = b""
                while (chunk := await reader.readline()) != b".\r\n":
                    data += chunk[1:] if chunk.startswith(b"..") else chunk
                self.messages.append(email_lib.message_from_bytes(data, policy=policy.default))
                self.envelopes.append((sender, recipients))
                writer.write(b"250 queued\r\n")
            elif verb == "QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 OK\r\n")
            await writer.drain()
        writer.close()


async def test_registration_mails_the_verification_token_over_smtp_when_configured(aiohttp_client, stack_env, config):
    smtp = SmtpServer()
    server = await asyncio.start_server(smtp.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        app = create_app(make_config(stack_env, database_url=config.database.url, smtp_host="127.0.0.1",
                                     smtp_port=port, smtp_starttls=False))
        client = await aiohttp_client(app)
        await register(client, "smtpuser")
        await wait_for(lambda: len(smtp.messages) == 1)
        message = smtp.messages[0]
        assert message["To"] == "smtpuser@example.com"
        token = re.search(r"token: (\S+)", message.get_content()).group(1)
        response = await client.post("/api/accounts/verify-email/", json={"token": token})
        assert response.status == 200
        assert (await response.json())["is_verified"] is True
    finally:
        server.close()
        await server.wait_closed()
