"""What `smartcharge serve` checks about secrets before it listens: warnings and refusals.

Each check is a pure function of the loaded site and the listening options, so the CLI runs
them in one place and the tests can read their verdicts. Warnings name stations, never secrets.
"""

from __future__ import annotations

from smartcharge.credentials import is_hashed
from smartcharge.model import Site


def plaintext_password_warnings(site: Site) -> list[str]:
    plain = [s.station_id for s in site.stations if s.password and not is_hashed(s.password)]
    if not plain:
        return []
    return [f"station passwords of {', '.join(plain)} are stored in plaintext in the site file; "
            "anyone who reads the file can pose as those stations. Store salted hashes "
            "instead (`smartcharge hash-secret` prints one)."]
