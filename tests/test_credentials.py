"""Hashed secrets: what `smartcharge hash-secret` prints is what the site file's checks accept."""

from __future__ import annotations

import subprocess
import sys

import pytest

from smartcharge.credentials import (SecretFormatError, check_format, hash_secret, is_hashed,
                                     verify_secret)

FAST = {"n": 2 ** 10, "r": 8, "p": 1}   # the format is the same; tests need not pay for 2**14


def test_a_hash_verifies_its_secret_and_nothing_else():
    stored = hash_secret("s3cret-token", **FAST)
    assert is_hashed(stored)
    assert verify_secret(stored, "s3cret-token")
    assert verify_secret(stored, b"s3cret-token")
    assert not verify_secret(stored, "s3cret-tokem")
    assert not verify_secret(stored, "")


def test_two_hashes_of_one_secret_differ_by_their_salt():
    assert hash_secret("same", **FAST) != hash_secret("same", **FAST)


def test_plaintext_is_still_compared_exactly():
    assert verify_secret("plain", "plain")
    assert not verify_secret("plain", "plain ")
    assert not is_hashed("plain")


@pytest.mark.parametrize("stored", ["scrypt$x", "scrypt$1024$8$1$!!$AAAA",
                                    "scrypt$1000$8$1$c2FsdHNhbHQ=$" + "A" * 44,
                                    "scrypt$1073741824$8$1$c2FsdHNhbHQ=$" + "A" * 44])
def test_a_malformed_hash_is_refused_with_a_reason(stored):
    with pytest.raises(SecretFormatError):
        check_format(stored)


def test_the_cli_prints_a_hash_that_verifies():
    done = subprocess.run([sys.executable, "-m", "smartcharge", "hash-secret"],
                          input="station-password-1\n", capture_output=True, text=True,
                          timeout=60, check=True)
    stored = done.stdout.strip()
    assert is_hashed(stored)
    assert verify_secret(stored, "station-password-1")
    assert not verify_secret(stored, "station-password-2")
