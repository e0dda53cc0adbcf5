"""What every VEN does the same way, whatever its version: its status (shown in the snapshot,
kept in the store), a loop that survives the VTN being away, and waiting between polls."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from urllib.parse import urlsplit

from smartcharge.model import OpenAdrProgram
from smartcharge.openadr import status as vs
from smartcharge.serve_checks import is_loopback
from smartcharge.store import StoreClosed

log = logging.getLogger(__name__)
RETRY_S = 1.0          # after an unexpected error, before the next session (real seconds)


class VenRunner:
    def __init__(self, program: OpenAdrProgram, sink, clock, store_of) -> None:
        self.program = program
        self.sink = sink
        self.clock = clock
        self._store_of = store_of
        self.status = vs.VenStatus(program.program, program.version, program.vtn_url)
        self._dirty = False
        self.polled = asyncio.Event()   # replaced after every successful contact (for waiters)

    async def restore(self) -> None:
        await self._store_of().run(lambda tx: vs.load(tx, self.status))

    def contact(self, ok: bool, error: str | None = None) -> None:
        """A request to the VTN went (ok) or did not; saved before the next wait."""
        changed = self.status.contact(ok, self.clock.now(), error)
        self._dirty = self._dirty or changed or ok
        if ok:
            done, self.polled = self.polled, asyncio.Event()
            done.set()

    async def save_status(self) -> None:
        self._dirty = False
        try:
            await self._store_of().run(lambda tx: vs.save(tx, self.status, self.clock.now()))
        except (StoreClosed, sqlite3.Error, OSError) as exc:
            log.error("openadr %s: VEN state not stored: %s", self.program.program, exc)

    async def wait_interval(self, seconds: float) -> None:
        if self._dirty:
            await self.save_status()
        await asyncio.sleep(seconds)

    async def run(self) -> None:
        """The VEN's task: sessions until cancelled; an unexpected error starts a new one."""
        await self.restore()
        host = urlsplit(self.program.vtn_url).hostname or ""
        if self.program.vtn_url.startswith("http://") and not is_loopback(host):
            log.warning("openadr %s: the VTN is reached over plain http (%s): events and "
                        "credentials travel unprotected; use https", self.program.program,
                        self.program.vtn_url)
        try:
            while True:
                try:
                    await self._session()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:   # task boundary: log, mark, start over
                    log.exception("openadr %s: VEN session failed", self.program.program)
                    self.contact(False, f"{type(exc).__name__}: {exc}")
                await self.wait_interval(RETRY_S)
        finally:
            self.status.state = vs.STOPPED

    async def _session(self) -> None:
        raise NotImplementedError
