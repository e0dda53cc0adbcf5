"""What `smartcharge serve` says and refuses at start about secrets and where they travel."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

from smartcharge.credentials import hash_secret

SITE = """
[site]
name = "serve security"
[[stations]]
id = "CP1"
password = "{cp1}"
[[stations.connectors]]
id = 1
[[stations]]
id = "CP2"
password = "{cp2}"
[[stations.connectors]]
id = 1
"""
PLAIN = "station-password-01"
HASHED = hash_secret(PLAIN, n=2 ** 10)


async def serve_and_stop(tmp_path, site_text: str, *extra: str) -> tuple[int, str]:
    """Start `serve`, wait for its listening line (or its exit), stop it; (exit code, stderr)."""
    config = tmp_path / "site.toml"
    config.write_text(site_text)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "smartcharge", "serve", "--config", str(config), "--port", "0",
        "--db", str(tmp_path / "serve.sqlite"), "--log-level", "WARNING", *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    if re.search(rb"listening on", line):
        process.send_signal(signal.SIGTERM)
    stderr = await asyncio.wait_for(process.stderr.read(), 30)
    return await asyncio.wait_for(process.wait(), 30), stderr.decode()


async def test_plaintext_station_password_warns_at_start_hash_does_not(tmp_path):
    code, stderr = await serve_and_stop(tmp_path, SITE.format(cp1=PLAIN, cp2=HASHED),
                                        "--host", "127.0.0.1")
    assert code == 0, stderr
    warning = [line for line in stderr.splitlines() if "plaintext" in line]
    assert len(warning) == 1 and "CP1" in warning[0] and "CP2" not in warning[0]
    assert "hash-secret" in warning[0]
    assert PLAIN not in stderr


async def test_all_hashed_passwords_no_plaintext_warning(tmp_path):
    code, stderr = await serve_and_stop(tmp_path, SITE.format(cp1=HASHED, cp2=HASHED),
                                        "--host", "127.0.0.1")
    assert code == 0, stderr
    assert "plaintext" not in stderr
