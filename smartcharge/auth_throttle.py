"""Slow down guessing: too many failed logins (a station's Basic auth at the OCPP endpoint, an
API bearer token), and the guesser waits. One instance per door, each with its own settings.

Per (remote address, identity): a failed login is remembered for `window_s`; when
`max_failures` of them fall inside that window that identity is refused from that address with
HTTP 429 (and `Retry-After`) for `backoff_s`, whatever it presents, without its credentials
being checked (a refused guess costs us no scrypt). Per address, a ceiling far higher
(`address_max_failures` inside the same window) refuses every identity from it: one guesser
trying identity after identity. Time comes from the server's clock, so tests drive it without
sleeping.

Why both (docs/cli.md): stations behind one NAT share an address. Per address alone, one
station there with a wrong password, retrying, locked its neighbours out of reconnecting for
the back-off; now it locks out only itself (once it waits its failures are not counted, so a
station retrying for ever adds at most `max_failures` to the address per back-off). An
attacker cannot lock out stations elsewhere. Behind a reverse proxy every peer is the proxy:
bind the endpoint itself. The API's tokens name no identity: there the address is the key.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from smartcharge.clock import Clock


@dataclass(frozen=True)
class ThrottleSettings:
    max_failures: int = 10         # failed logins of one identity from one address in window_s
    window_s: float = 60.0
    backoff_s: float = 300.0       # ... and it is refused (429) for this long
    # failed logins from one address, whatever identities, in window_s (None: max_failures)
    address_max_failures: int | None = 100
    max_addresses: int = 10_000    # bounded memory under a scan from many addresses


class AuthThrottle:
    def __init__(self, clock: Clock, settings: ThrottleSettings = ThrottleSettings()) -> None:
        self._clock = clock
        self._settings = settings
        # keys: (address, identity) for one identity, (address, None) for the whole address
        self._failures: dict[tuple[str, str | None], deque[datetime]] = {}
        self._blocked_until: dict[tuple[str, str | None], datetime] = {}

    def retry_after_s(self, address: str, identity: str = "") -> float | None:
        """Seconds `identity` must still wait from this address, or None if it may try now."""
        waits = [left for key in ((address, None), (address, identity))
                 if (left := self._left_s(key)) is not None]
        return max(waits) if waits else None

    def _left_s(self, key) -> float | None:
        until = self._blocked_until.get(key)
        if until is None:
            return None
        left_s = (until - self._clock.now()).total_seconds()
        if left_s <= 0:
            del self._blocked_until[key]
            return None
        return left_s

    def failed(self, address: str, identity: str = "") -> bool:
        """Record a failed login; True if this one starts a back-off (of the identity there,
        or of the whole address)."""
        settings = self._settings
        started = self._count((address, identity), settings.max_failures)
        if identity:   # (no identity - an API token: the address is the key already)
            ceiling = settings.address_max_failures or settings.max_failures
            started = self._count((address, None), ceiling) or started
        return started

    def _count(self, key, limit: int) -> bool:
        now = self._clock.now()
        recent = self._failures.setdefault(key, deque())
        recent.append(now)
        horizon = now - timedelta(seconds=self._settings.window_s)
        while recent and recent[0] <= horizon:
            recent.popleft()
        if len(recent) >= limit:
            del self._failures[key]
            self._blocked_until[key] = now + timedelta(seconds=self._settings.backoff_s)
            self._bound(self._blocked_until)
            return True
        self._bound(self._failures)
        return False

    def _bound(self, table: dict) -> None:
        while len(table) > self._settings.max_addresses:   # dicts keep insertion order
            del table[next(iter(table))]
