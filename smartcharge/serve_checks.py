"""What `smartcharge serve` checks about secrets before it listens: warnings and refusals.

Each check is a pure function of the loaded site and the listening options, so the CLI runs
them in one place and the tests can read their verdicts. Warnings name stations, never secrets.
"""

from __future__ import annotations

import functools
import ipaddress
import tomllib
from dataclasses import dataclass
from pathlib import Path

from smartcharge.config import API_ROLES
from smartcharge.credentials import is_hashed, verify_secret
from smartcharge.model import Site


def is_loopback(host: str) -> bool:
    """Is `host` a loopback address (or `localhost`)? Names other than localhost count as not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


DEMO_SITE = Path(__file__).resolve().parent / "data" / "demo-site.toml"


def plaintext_password_warnings(site: Site) -> list[str]:
    plain = [s.station_id for s in site.stations if s.password and not is_hashed(s.password)]
    if not plain:
        return []
    return [f"station passwords of {', '.join(plain)} are stored in plaintext in the site file; "
            "anyone who reads the file can pose as those stations. Store salted hashes "
            "instead (`smartcharge hash-secret` prints one)."]


def no_password_warnings(site: Site, host: str, client_certs: bool) -> list[str]:
    """Stations anyone on the network may pose as: no password (OCPP security profile 0) on an
    address that is not loopback, unless a client certificate names each station."""
    if client_certs or is_loopback(host):
        return []
    bare = [s.station_id for s in site.stations if not s.password]
    if not bare:
        return []
    return [f"stations {', '.join(bare)} have no password: anyone who reaches {host} can "
            "connect as them and send their billing messages. Give each a `password` "
            "(OCPP security profile 1 or 2) or use --tls-client-ca (profile 3)."]


def cleartext_warnings(site: Site, host: str, tls: bool) -> list[str]:
    """Secrets that would cross the network unencrypted: served off loopback without TLS."""
    if tls or is_loopback(host):
        return []
    warnings = []
    if any(station.password for station in site.stations):
        warnings.append(f"listening on {host} without TLS: stations' HTTP Basic auth passwords "
                        "travel unencrypted and anyone on the path can read them. Serve wss:// "
                        "with --tls-cert/--tls-key (OCPP security profile 2).")
    if _api_tokens(site):
        warnings.append(f"listening on {host} without TLS: the REST API's bearer tokens travel "
                        "unencrypted. Serve https:// with --tls-cert/--tls-key.")
    return warnings


def demo_key_refusal(site: Site, host: str) -> str | None:
    """Why `serve` refuses this site on `host`, if it uses keys published with the demo site."""
    if is_loopback(host):
        return None
    demo = _demo_secrets()
    stations = []
    for station in site.stations:
        if not station.password:
            continue
        known = demo.passwords.get(station.station_id)
        if station.password in demo.all_passwords or (
                known is not None and is_hashed(station.password)
                and verify_secret(station.password, known)):
            stations.append(station.station_id)
    tokens = _api_tokens(site) & demo.tokens
    if not stations and not tokens:
        return None
    used = []
    if stations:
        used.append(f"the passwords of stations {', '.join(stations)}")
    if tokens:
        used.append(f"{len(tokens)} api token(s)")
    return (f"{' and '.join(used)} are the packaged demo site's published keys; anyone can "
            f"read them, so they are refused on {host}. Bind to loopback (--host 127.0.0.1) "
            "to try the demo site, or give every station and token its own secret.")


def _api_tokens(site: Site) -> frozenset[str]:
    return frozenset().union(*(getattr(site, f"{role}_tokens") for role in API_ROLES))


@dataclass(frozen=True)
class _DemoSecrets:
    passwords: dict[str, str]        # station id -> its demo password
    all_passwords: frozenset[str]
    tokens: frozenset[str]


@functools.cache
def _demo_secrets() -> _DemoSecrets:
    # read the raw TOML, not load_site: its api tokens must not pick up the environment's
    data = tomllib.loads(DEMO_SITE.read_text(encoding="utf-8"))
    passwords = {s["id"]: s["password"] for s in data.get("stations", []) if "password" in s}
    api = data.get("api", {})
    return _DemoSecrets(passwords, frozenset(passwords.values()),
                        frozenset(t for role in API_ROLES for t in api.get(f"{role}_tokens", [])))
