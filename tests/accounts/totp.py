"""RFC 6238 TOTP written out from the RFC, independent of django-otp: what an authenticator app computes."""

import base64
import hashlib
import hmac
import struct
import time
from urllib.parse import parse_qs, urlparse


def hotp(key: bytes, counter: int, digits: int = 6) -> str:
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    code = (struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF) % 10**digits
    return f"{code:0{digits}d}"


def totp(key: bytes, at: float | None = None, step: int = 30, digits: int = 6) -> str:
    return hotp(key, int((time.time() if at is None else at) // step), digits)


def key_from_uri(uri: str) -> bytes:
    """The shared secret of an otpauth:// URI (base32, padding optional), as a phone app reads it."""
    secret = parse_qs(urlparse(uri).query)["secret"][0]
    return base64.b32decode(secret + "=" * (-len(secret) % 8))
