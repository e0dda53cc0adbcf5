"""Who is connected now, and how to send a call to them.

`StationLink.call()` is what the REST API and the site controller use to talk to a station. It
never returns None for an error: it returns the typed `ocpp.v16.call_result.*` payload or raises
`StationOffline`, `StationTimeout` or `StationCallError` (and ValueError, before anything is
sent, for a request that breaks the OCPP schema: that is our bug; a control port's
SetChargingProfile, proven valid by its builders' tests, is not checked again). Do not await
it from inside the same station's inbound handler (the library handles one message at a
time): schedule a task with `link.spawn()` instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from smartcharge.tasks import OwnedTasks

log = logging.getLogger(__name__)


class StationOffline(Exception):
    """The station is not connected (or went away while we waited for its answer)."""


class StationTimeout(Exception):
    """The station did not answer in time. `sent`: whether the request may have reached it
    (False: the time ran out while it waited for the line - our earlier call to the station
    unanswered, or its BootNotification after a reconnect - and it was never sent)."""

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent


@dataclass
class CallProgress:
    """How far one of our calls got: what its caller is told if its time runs out."""

    sent: bool = False            # handed to the socket: it may have reached the station
    behind: str | None = None     # what it waited for before it could be sent


class StationCallError(Exception):
    """The station answered with a CALLERROR, or with something we cannot accept as an answer."""

    def __init__(self, code: str, description: str, details: dict | None = None) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.details = details or {}


class StationAnswerInvalid(StationCallError):
    """The station answered our call, without a CALLERROR, with a payload its schema does not
    allow (or a date-time that is none). To the site a refusal, as any StationCallError;
    `code` names the problem as a CALLERROR would; `answer`: the payload as it came."""

    def __init__(self, code: str, description: str, answer: Any) -> None:
        super().__init__(code, description)
        self.answer = answer


class StationAnswerUnreadable(StationTimeout):
    """The station answered our call with a frame that cannot be read as an answer (no
    CALLRESULT's or CALLERROR's shape, too large, not Unicode text) under its message id: told
    at once, not at the timeout. To the site what no answer is: it may have done it all the
    same. `frame`: the frame's head, as it came."""

    def __init__(self, message: str, frame: str) -> None:
        super().__init__(message, sent=True)
        self.frame = frame


class CallTransport(Protocol):
    """What a link needs from a protocol adapter (a version's ChargePoint subclass)."""

    boot_accepted: bool

    async def send_call(self, request: Any, *, wire: dict | None = None,
                        progress: CallProgress | None = None) -> Any: ...


class StationLink:
    def __init__(self, station_id: str, protocol: str, adapter: CallTransport,
                 default_timeout_s: float, close_socket: Any) -> None:
        self.station_id = station_id
        self.protocol = protocol
        self._adapter = adapter
        self._default_timeout_s = default_timeout_s
        self._close_socket = close_socket           # async callable(reason)
        self._closed = asyncio.Event()
        self._on_close: set = set()   # the calls in flight: each cancelled when it closes
        self._tasks = OwnedTasks(log, f"station {station_id}")

    @property
    def adapter(self) -> CallTransport:
        """The protocol adapter behind this link (a version's ChargePoint subclass): the
        version's control port sends through `adapter.send_call` and asks it for what only
        that version knows (e.g. a 2.0.1 station's own transaction id)."""
        return self._adapter

    @property
    def boot_accepted(self) -> bool:
        return self._adapter.boot_accepted

    @property
    def refused_unregistered(self) -> bool:
        """A call was refused with SecurityError since the station's last boot: it did not
        count itself registered (set it up again once its boot is answered)."""
        return getattr(self._adapter, "refused_unregistered", False)

    @property
    def last_seen(self):
        """When the station last sent us anything (UTC datetime), or None if unknown."""
        return getattr(self._adapter, "last_seen", None)

    @property
    def connected_at(self):
        """When this connection was opened (UTC datetime), or None if unknown."""
        return getattr(self._adapter, "connected_at", None)

    def drained_by(self, queue_drain_s: float) -> datetime | None:
        """Until when the station has delivered everything it sent, as far as this connection
        tells: its last frame, once the connection has been open `queue_drain_s` (a station
        sends its offline queue first when it reconnects); None before."""
        connected, last = self.connected_at, self.last_seen
        if connected is None or last is None \
                or (last - connected).total_seconds() < queue_drain_s:
            return None
        return last

    @property
    def clock_offset_s(self) -> float | None:
        """How far the station's clock runs ahead of ours (negative: behind), as its
        messages' stamps show on this connection (`ocpp/clock_offset.py`); None: not known."""
        estimate = getattr(self._adapter, "clock_offset", None)
        return None if estimate is None else estimate.offset_s

    @property
    def online(self) -> bool:
        return not self._closed.is_set()

    async def call(self, request: Any, timeout_s: float | None = None, *,
                   wire: dict | None = None) -> Any:
        """`wire`: the request's payload as it goes out, built by code whose every output a
        test proves valid (a control port's SetChargingProfile): not serialised and
        schema-checked again (`send_call`).

        Runs the adapter's call in the caller's task, under a timeout, and cancels it when the
        link closes meanwhile (StationOffline): a task for the call and one waiting for the
        close, per call, were ~a fifth of the loop's CPU per SetChargingProfile (issue 10).
        A caller cancelled from outside cancels its call (its answer would be dropped)."""
        if self._closed.is_set():
            raise StationOffline(f"station {self.station_id} is not connected")
        timeout_s = self._default_timeout_s if timeout_s is None else timeout_s
        task = asyncio.current_task()
        cut: list[bool] = []
        waiting = [True]
        progress = CallProgress()

        def cancel_if_waiting() -> None:
            if waiting[0] and not cut:
                cut.append(True)
                task.cancel()

        def closed() -> None:
            # one turn of the loop later: an answer read in the same go as the close (a
            # Reset's answer, then the reboot) has woken this call already - cancelled at
            # once, it lost the answer it had ("disconnected during Reset" for an Accepted)
            task.get_loop().call_soon(cancel_if_waiting)
        self._on_close.add(closed)
        try:
            async with asyncio.timeout(timeout_s) as timer:
                return await self._adapter.send_call(request, wire=wire, progress=progress)
        except asyncio.CancelledError:
            if cut and task.uncancel() == 0:   # ours, not the caller's own cancellation
                raise StationOffline(f"station {self.station_id} disconnected during "
                                     f"{type(request).__name__}") from None
            raise
        except TimeoutError:
            if not timer.expired():
                raise
            action = type(request).__name__
            if not progress.sent:
                # it never left: the station was never asked (one call at a time, OCPP-J)
                behind = progress.behind or "its turn to be sent"
                log.warning("station %s: %s not sent within %.1f s, waiting for %s",
                            self.station_id, action, timeout_s, behind)
                raise StationTimeout(
                    f"{action} was not sent to station {self.station_id} within "
                    f"{timeout_s:g} s: it waited for {behind}", sent=False) from None
            log.warning("station %s: no answer to %s within %.1f s", self.station_id, action,
                        timeout_s)
            raise StationTimeout(f"station {self.station_id} did not answer {action} "
                                 f"within {timeout_s:g} s") from None
        finally:
            waiting[0] = False
            self._on_close.discard(closed)

    def spawn(self, coroutine: Coroutine) -> asyncio.Task:
        """Run work for this station in an owned task, cancelled when the link closes."""
        return self._tasks.spawn(coroutine)

    async def close(self, reason: str) -> None:
        """Close the socket (if still open) and stop everything that belongs to this link."""
        self.mark_closed()
        await self._close_socket(reason)

    def mark_closed(self) -> None:
        self._closed.set()
        self._tasks.cancel_all()
        for closed in list(self._on_close):
            closed()


class StationRegistry:
    """The live links by station id; a new connection with the same identity replaces the old."""

    def __init__(self, queue_drain_s: float = 60.0) -> None:
        self._links: dict[str, StationLink] = {}
        # per station, until when it had delivered everything, as its ended connections of
        # this process showed (`reported_until`); in memory: a restart knows nothing of it
        self.queue_drain_s = queue_drain_s
        self._reported: dict[str, datetime] = {}
        self._retiring: set[asyncio.Task] = set()
        # every link ever attached: those not online now have ended (gc_serving counts them)
        self.attached_total = 0

    def get(self, station_id: str) -> StationLink | None:
        return self._links.get(station_id)

    def online_ids(self) -> set[str]:
        return set(self._links)

    @property
    def online_count(self) -> int:
        return len(self._links)

    def attach(self, link: StationLink) -> StationLink | None:
        """Register `link`; returns the link it replaces (the caller closes that one)."""
        previous = self._links.get(link.station_id)
        if previous is not None:
            self._ended(previous)
        self._links[link.station_id] = link
        self.attached_total += 1
        return previous

    def retire(self, link: StationLink, reason: str) -> None:
        """Close a replaced link in the background: its peer may be dead, and the close
        handshake must not hold up the connection that replaced it."""
        link.mark_closed()
        task = asyncio.ensure_future(link.close(reason))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def detach(self, link: StationLink) -> bool:
        """Forget `link` if it is still the current one (a replaced link must not remove its
        successor). Returns True when it was current."""
        if self._links.get(link.station_id) is link:
            del self._links[link.station_id]
            self._ended(link)
            return True
        return False

    def _ended(self, link: StationLink) -> None:
        drained = link.drained_by(self.queue_drain_s)
        if drained is not None:
            known = self._reported.get(link.station_id)
            self._reported[link.station_id] = drained if known is None else max(known, drained)

    def reported_until(self, station_id: str, now: datetime) -> datetime | None:
        """Until when `station_id` has delivered every message it sent (its offline queue
        too): `now` while it is online and has been for `queue_drain_s`, else the last frame
        of its latest connection of this process that had been; None when not known (after a
        restart, until it has been online that long). The billing export's `settled`: a
        station's queue may hold stops, samples and whole sessions of the time after this
        (session 29's judge)."""
        link = self._links.get(station_id)
        if link is not None and link.connected_at is not None \
                and (now - link.connected_at).total_seconds() >= self.queue_drain_s:
            return now
        return self._reported.get(station_id)

    async def close_all(self, reason: str) -> None:
        links = list(self._links.values())
        await asyncio.gather(*(link.close(reason) for link in links), *self._retiring,
                             return_exceptions=True)
