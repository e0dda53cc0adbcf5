"""Slow down guessing: too many failed logins (a station's Basic auth at the OCPP endpoint, an
API bearer token), and an address waits. One instance per door, each with its own settings.

Per remote address: a failed HTTP Basic auth is remembered for `window_s`; when
`max_failures` of them fall inside that window the address is refused with HTTP 429 (and
`Retry-After`) for `backoff_s`, whatever it presents, without its credentials being checked
(a refused guess costs us no scrypt). Other addresses are unaffected. Time comes from the
server's clock, so tests drive it without sleeping.

Trade-off, stated in docs/cli.md: stations behind one NAT share an address, so one station with
a wrong password there delays its neighbours' reconnects by the back-off; an attacker cannot lock
out stations elsewhere. Behind a reverse proxy every peer is the proxy: bind the endpoint itself.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from smartcharge.clock import Clock


@dataclass(frozen=True)
class ThrottleSettings:
    max_failures: int = 10         # failed logins from one address inside window_s ...
    window_s: float = 60.0
    backoff_s: float = 300.0       # ... and it is refused (429) for this long
    max_addresses: int = 10_000    # bounded memory under a scan from many addresses


class AuthThrottle:
    def __init__(self, clock: Clock, settings: ThrottleSettings = ThrottleSettings()) -> None:
        self._clock = clock
        self._settings = settings
        self._failures: dict[str, deque[datetime]] = {}
        self._blocked_until: dict[str, datetime] = {}

    def retry_after_s(self, address: str) -> float | None:
        """Seconds this address must still wait, or None if it may try now."""
        until = self._blocked_until.get(address)
        if until is None:
            return None
        left_s = (until - self._clock.now()).total_seconds()
        if left_s <= 0:
            del self._blocked_until[address]
            return None
        return left_s

    def failed(self, address: str) -> bool:
        """Record a failed login; True if this one starts a back-off for the address."""
        now = self._clock.now()
        settings = self._settings
        recent = self._failures.setdefault(address, deque())
        recent.append(now)
        horizon = now - timedelta(seconds=settings.window_s)
        while recent and recent[0] <= horizon:
            recent.popleft()
        if len(recent) >= settings.max_failures:
            del self._failures[address]
            self._blocked_until[address] = now + timedelta(seconds=settings.backoff_s)
            self._bound(self._blocked_until)
            return True
        self._bound(self._failures)
        return False

    def _bound(self, table: dict) -> None:
        while len(table) > self._settings.max_addresses:   # dicts keep insertion order
            del table[next(iter(table))]
