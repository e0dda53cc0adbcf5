"""Whether the store takes writes, told once, summed up, and asked by the health route.

A store that refuses commits (a full or failed disk, its file replaced or moved under us) keeps
the server serving: every billing message is a CALLERROR, every write of the API a 503
(docs/promises.md, "Audit, session 33 (kills)"). Logged per refused message that was two
tracebacks each - thousands of stations sending MeterValues every minute flood the log, which
may sit on the same full disk. So the writer logs the first refusal of a streak (one ERROR
with its cause, one traceback at most: `store_ops`), and this, in the server, counts the rest:
one summary line per `summary_every_s` while refusals go on, one line when a commit succeeds
again. `GET /api/health` reads `state()`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from smartcharge.store_ops import refusal_of

log = logging.getLogger(__name__)


class StoreRefusals:
    """Fed each group's errors (from the writer thread or the writer process's answers)."""

    def __init__(self, path: str, summary_every_s: float = 60.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.summary_every_s = summary_every_s
        self._monotonic = monotonic
        self._lock = threading.Lock()   # the writer thread and the loop both report groups
        self.cause: str | None = None   # None: the store writes
        self.since: datetime | None = None
        self.refused = 0                # writes refused since `since`
        self._unsaid = 0                # refused since the last line about it
        self._said_at = 0.0

    def saw_group(self, errors: Iterable[BaseException | None]) -> None:
        """One group's outcome: refused (a commit that failed: every write's error is the
        same marked failure) or committed (its pieces' own errors are theirs, not the store's)."""
        errors = list(errors)
        refusal = next((refusal_of(error) for error in errors if refusal_of(error)), None)
        with self._lock:
            if refusal is None:
                self._wrote()
            else:
                self._was_refused(refusal, len(errors))

    def _was_refused(self, cause: str, writes: int) -> None:
        now_s = self._monotonic()
        if self.cause is None:   # the first of a streak: the writer's ERROR line said it
            self.since, self.refused, self._unsaid = datetime.now(UTC), 0, -writes
            self._said_at = now_s
        self.cause = cause
        self.refused += writes
        self._unsaid += writes
        if self._unsaid > 0 and now_s - self._said_at >= self.summary_every_s:
            log.error("store %s: %d writes refused in the last %.0f s (%d since %s): %s",
                      self.path, self._unsaid, now_s - self._said_at, self.refused,
                      self.since.isoformat(timespec="seconds"), cause)
            self._unsaid, self._said_at = 0, now_s

    def _wrote(self) -> None:
        if self.cause is None:
            return
        log.warning("store %s writes again: %d writes refused since %s (%s)", self.path,
                    self.refused, self.since.isoformat(timespec="seconds"), self.cause)
        self.cause, self.since, self.refused, self._unsaid = None, None, 0, 0

    def state(self) -> dict:
        """For the health route: no billing data, no id tags - the store's state only."""
        with self._lock:
            if self.cause is None:
                return {"store": "writing", "since": None, "refused": 0, "cause": None}
            return {"store": "refusing", "since": self.since.isoformat(),
                    "refused": self.refused, "cause": self.cause}


def log_unless_refused(logger: logging.Logger, error: BaseException, message: str,
                       *args: object) -> None:
    """A caller's failed store write: with its traceback, unless it is the store refusing
    writes - said once a streak and summed up here, so DEBUG only (a line per message and
    per control round flooded the log)."""
    if refusal_of(error) is None and refusal_of(error.__cause__) is None:
        logger.error(message, *args, exc_info=error)
    else:
        logger.debug(message + " (the store refuses writes)", *args)
