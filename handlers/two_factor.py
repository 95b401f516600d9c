"""TOTP two-factor rules: secrets sealed at rest, codes checked against the app's clock with one
step of drift either way and never accepted twice, single-use recovery codes.

The TOTP secret is encrypted with AES-GCM under `GLINT_TWO_FACTOR_KEY` (32 bytes, base64) or, when
that is not set, under a key derived from `GLINT_JWT_SECRET` by HKDF: a database dump alone does
not give the secrets away. Rotating the key the secrets were sealed under makes them unreadable
(their owners set two-factor up again), so production sets a key of its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from datetime import datetime

import asyncpg
import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from storage import two_factor

ISSUER = "glint"
RECOVERY_CODE_COUNT = 10
_SEALED_V1 = b"\x01"
_TOTP_CODE = re.compile(r"^[0-9]{6}$")  # ASCII: \d also takes "١٢٣٤٥٦", which compare_digest refuses


class SecretBox:
    """Seals short secrets with AES-GCM (a random 96-bit nonce per secret)."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, plain: str) -> bytes:
        nonce = os.urandom(12)
        return _SEALED_V1 + nonce + self._aead.encrypt(nonce, plain.encode(), b"glint-totp")

    def open(self, sealed: bytes) -> str | None:
        """The secret, or None if it was sealed under another key or is damaged."""
        if sealed[:1] != _SEALED_V1:
            return None
        try:
            return self._aead.decrypt(sealed[1:13], sealed[13:], b"glint-totp").decode()
        except InvalidTag:
            return None


def secret_box(two_factor_key: str, jwt_secret: str) -> SecretBox:
    """The box of the configured key (base64), or of the key derived from the JWT secret when
    none is set; app/ makes it once per process (handlers.context.secret_box_key)."""
    if two_factor_key:
        key = base64.b64decode(two_factor_key)
    else:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"glint two-factor secrets").derive(
            jwt_secret.encode())
    return SecretBox(key)


def new_secret() -> str:
    """A fresh base32 TOTP secret (160 bits)."""
    return pyotp.random_base32(32)


def otpauth_url(secret: str, username: str) -> str:
    """The URL an authenticator app reads from a QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The 30-second step (now, one before or one after) whose code this is, if any."""
    totp = pyotp.TOTP(secret)
    step = totp.timecode(now)
    for candidate in (step, step - 1, step + 1):
        if hmac.compare_digest(totp.generate_otp(candidate), code):
            return candidate
    return None


def hash_recovery_code(code: str) -> bytes:
    """The stored form of a recovery code (spaces, dashes and case ignored)."""
    return hashlib.sha256(re.sub(r"[\s-]", "", code).lower().encode()).digest()


def new_recovery_codes() -> list[str]:
    """Fresh recovery codes, `xxxxx-xxxxx` in hex (40 bits each)."""
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = secrets.token_hex(5)
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


async def check_totp(pool: asyncpg.Pool, box: SecretBox, now: datetime, user_id: int, sealed: bytes,
                     code: str) -> bool:
    """Accept a TOTP code once: right for now (±1 step) and of a step later than the last one used."""
    secret = box.open(sealed)
    code = code.strip().replace(" ", "")
    if secret is None or not _TOTP_CODE.match(code):
        return False
    step = matching_step(secret, code, now)
    return step is not None and await two_factor.accept_step(pool, user_id, step)


async def check_second_factor(pool: asyncpg.Pool, box: SecretBox, now: datetime, user_id: int, code: str) -> bool:
    """A TOTP code or an unused recovery code (spent now) of an account with two-factor on."""
    row = await two_factor.get(pool, user_id)
    if row is None or row["confirmed_at"] is None:
        return False
    if _TOTP_CODE.match(code.strip().replace(" ", "")):
        return await check_totp(pool, box, now, user_id, row["secret"], code)
    return await two_factor.spend_recovery_code(pool, user_id, hash_recovery_code(code))
