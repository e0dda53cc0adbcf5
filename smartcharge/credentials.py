"""Secrets in the site file: station passwords and API tokens, as salted hashes or plaintext.

A hashed secret is `scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>` (hashlib.scrypt, standard library),
made by `smartcharge hash-secret`. Plaintext still works (the site file predates hashing) but the
loader warns about it. One function compares a presented secret with a stored one, in constant
time for plaintext and with scrypt for a hash, so every caller checks secrets the same way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

PREFIX = "scrypt$"
# RFC 7914's interactive parameters: ~16 MiB and tens of ms per check on a small machine, which
# also slows down guessing through the endpoints (a failed check costs the guesser that much).
SCRYPT_N = 2 ** 14
SCRYPT_R = 8
SCRYPT_P = 1
_HASH_BYTES = 32
_SALT_BYTES = 16
_MAX_N = 2 ** 17   # 128 MiB at r=8: a hash asking for more is refused, not computed


class SecretFormatError(ValueError):
    """A stored secret that starts like a hash but is not one we can check."""


def is_hashed(stored: str) -> bool:
    return stored.startswith(PREFIX)


def hash_secret(plain: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """The site-file form of `plain`: a fresh random salt, scrypt, both base64."""
    salt = os.urandom(_SALT_BYTES)
    digest = _scrypt(plain.encode("utf-8"), salt, n, r, p)
    return "$".join(("scrypt", str(n), str(r), str(p), _b64(salt), _b64(digest)))


def check_format(stored: str) -> None:
    """Raise SecretFormatError if `stored` looks hashed but cannot be parsed (for the loader)."""
    if is_hashed(stored):
        _parse(stored)


def verify_secret(stored: str, given: str | bytes) -> bool:
    """Does the presented secret `given` match `stored` (a hash or plaintext)?"""
    given_bytes = given.encode("utf-8") if isinstance(given, str) else given
    if not is_hashed(stored):
        return hmac.compare_digest(given_bytes, stored.encode("utf-8"))
    n, r, p, salt, digest = _parse(stored)
    return hmac.compare_digest(_scrypt(given_bytes, salt, n, r, p, len(digest)), digest)


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes]:
    parts = stored.split("$")
    if len(parts) != 6:
        raise SecretFormatError("a hashed secret is scrypt$N$r$p$salt$hash "
                                "(make one with `smartcharge hash-secret`)")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except ValueError as error:
        raise SecretFormatError(f"a hashed secret has a bad number or base64 field: {error}") \
            from None
    if n < 2 or n & (n - 1) or n > _MAX_N or r < 1 or p < 1 or r * p >= 2 ** 30:
        raise SecretFormatError(f"scrypt parameters N={n} r={r} p={p} are out of range "
                                f"(N a power of two up to {_MAX_N})")
    if len(salt) < 8 or len(digest) < 16:
        raise SecretFormatError("a hashed secret needs a salt of >= 8 and a hash of >= 16 bytes")
    return n, r, p, salt, digest


def _scrypt(secret: bytes, salt: bytes, n: int, r: int, p: int,
            length: int = _HASH_BYTES) -> bytes:
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=length,
                          maxmem=256 * r * (n + p + 2))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
