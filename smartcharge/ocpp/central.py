"""What every version's central-system adapter shares: the edge in front of the library's router,
and our calls to the station with their outcomes mapped to the registry's exceptions.

An adapter is `class CentralSystemVxx(CentralSystemBase, ocpp.vxx.ChargePoint)` with a `dialect`
(`ocpp/edge.py`): the checks are the same for every version, only the error names differ.
Nothing a station sends can end the connection except closing it. What a boot does to the store
and the sessions (`record_boot`), a connector's status (`record_status`) are version-neutral too.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ocpp.charge_point import remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.exceptions import InternalError, OCPPError, SecurityError, UnknownCallErrorCodeError
from ocpp.messages import Call, CallError, CallResult, MessageType

from smartcharge import ledger
from smartcharge.clock import Clock
from smartcharge.events import (ConnectorStatusChanged, EventBus, SessionStarted,
                                SessionStopped, StationBooted, StationClockMeasured)
from smartcharge.metering import station_max_power_w
from smartcharge.model import Site
from smartcharge.ocpp import fast_schema
from smartcharge.ocpp.clock_offset import AGREE_S as CLOCK_AGREE_S
from smartcharge.ocpp.clock_offset import IN_STEP, ClockOffset, stamp_reading, transit_s
from smartcharge.ocpp.casing import snake_case_keys
from smartcharge.ocpp.edge import Dialect, jsonable_details, schema_problem
from smartcharge import store_grants
from smartcharge.ocpp.remote_started import REMOTE_START_GRACE_S, RemoteStartsAsked
from smartcharge.ocpp.registry import (CallProgress, StationAnswerInvalid,
                                       StationAnswerUnreadable, StationCallError,
                                       StationOffline, StationTimeout)
from smartcharge.store import Store, from_db_time
from smartcharge.store_ops import StoreOp
from smartcharge.store_refusals import log_unless_refused
from smartcharge.turns import TurnBudget

log = logging.getLogger(__name__)

BOOT_NOTIFICATION = "BootNotification"   # the one call allowed before an accepted boot


class ConnectionClosed(Exception):
    """The WebSocket under a ChargePoint closed: ends its receive loop."""


@dataclass
class AdapterContext:
    site: Site
    store: Store
    events: EventBus
    clock: Clock
    # shared by every connection of the server: at most so many inbound frames handled per
    # turn of the event loop (`turns.py`); None: no bound
    inbound: TurnBudget | None = None
    # station id -> how far its clock ran from ours when last measured, on any connection: a
    # start it queued offline and sends first on its next connection (nothing measured there
    # yet) is read on its clock (`CentralSystemBase.id_tag_status`)
    clock_offsets_s: dict[str, float] = field(default_factory=dict)


class CentralSystemBase:
    """Mixin before an `ocpp` ChargePoint: our edge checks run before the library sees a frame;
    `send_call` is how the registry's link reaches the station."""

    dialect: Dialect

    def __init__(self, station_id: str, connection: Any, context: AdapterContext, *,
                 boot_accepted: bool, response_timeout_s: float,
                 boot_wait_s: float = 0.0) -> None:
        super().__init__(station_id, connection, response_timeout=response_timeout_s)
        self._ctx = context
        self._station = context.site.station(station_id)
        self._max_power_w = station_max_power_w(self._station)
        self._handled = set(self.route_map)
        self.boot_accepted = boot_accepted
        self.last_seen: datetime = context.clock.now()
        self.connected_at: datetime = self.last_seen   # its queue comes first: registry.py
        # how far its clock runs from ours, from its messages' stamps (`clock_offset.py`)
        clock = context.clock
        self.clock_offset = ClockOffset(transit_s=lambda: transit_s(clock))
        self._offset_told: float | None = None   # the estimate last published
        # its clock's offset when its sessions were last closed at a boot (before this
        # connection, else at its latest BootNotification): a session's stamps after that boot
        # are read on the clock it ran then, not on one their own stamps measure (a queued
        # sample from before a reboot, stamped by a clock ahead, reopened the session)
        self.offset_at_boot_s: float = context.clock_offsets_s.get(station_id) or 0.0
        self._sets_told = 0    # its clock seen set to ours so often, as last published
        # our calls in flight: unique id -> the future its answer (CallResult / CallError)
        # is handed to by `_route` (the library's queue and `wait_for` cost a task per call)
        self._answers: dict[str, asyncio.Future] = {}
        self._in_flight: str | None = None   # the action of our call holding the line
        self._unique_id_generator = _next_unique_id
        # Set while the station knows where it stands: once the answer to its BootNotification
        # has been sent (cleared again during any BootNotification). Our calls wait for it: a
        # station that has not read its boot's answer may refuse them (SecurityError); one
        # told Pending may be sent requests (1.6 4.2, 2.0.1 B02). A station accepted before
        # may come back rebooted (its BootNotification first) or merely reconnected (none
        # comes: allowed once accepted): its first frame tells, and if it sends nothing for
        # `boot_wait_s` it is taken for a reconnect.
        self._registered = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._boot_wait_until: float | None = loop.time() + boot_wait_s if boot_accepted \
            else None
        # one of our calls was refused with SecurityError since the last boot: the station
        # did not count itself registered, whatever we thought (dispatch sets it up again
        # after its boot: `refused_unregistered`)
        self.refused_unregistered = False
        # our remote starts waiting for its answer: their tags are granted here for a while
        # once it accepts (`remote_started`, stored: `store_grants`)
        self.remote_started = RemoteStartsAsked()

    async def route_message(self, raw_msg: str) -> None:
        if self._ctx.inbound is not None:   # a burst of frames: a batch per turn of the loop
            await self._ctx.inbound.admit()
        try:
            await self._route(raw_msg)
        except ConnectionClosed:
            raise
        except Exception:  # a task boundary: one bad frame must not end the connection
            log.exception("station %s: failed to handle frame %.200r", self.id, raw_msg)

    async def _route(self, raw_msg: str) -> None:
        self.last_seen = self._ctx.clock.now()
        dialect = self.dialect
        frame = dialect.inspect_frame(raw_msg)
        if frame.reply is not None:
            log.warning("station %s: %s, answered %s", self.id, frame.problem, frame.reply)
            await self._send(frame.reply)
            return
        if frame.message is None:
            log.warning("station %s: dropped a frame (%s): %.200r", self.id, frame.problem,
                        raw_msg)
            if frame.answer_id is not None:
                self._answered_unreadable(frame.answer_id, frame.problem, raw_msg)
            return
        if self._boot_wait_until is not None:
            # the first frame of a station accepted before: anything but a BootNotification
            # says it counts itself registered (a reconnect without a reboot)
            self._boot_wait_until = None
            if frame.message[0] != MessageType.Call or frame.message[2] != BOOT_NOTIFICATION:
                self._registered.set()
        if frame.message[0] != MessageType.Call:
            await self._answered(frame.message)    # an answer to one of our calls
            return
        _, unique_id, action, payload = frame.message
        error = dialect.check_action(action, self._handled)
        if error is None and not self.boot_accepted and action != BOOT_NOTIFICATION:
            error = SecurityError(description="BootNotification has not been accepted yet")
        if error is None:
            error = dialect.check_values(action, payload)
        if error is not None:
            log.warning("station %s: %s %s refused: %s %s", self.id, action, unique_id,
                        error.code, error.description)
            await self._send(dialect.call_error_frame(unique_id, error))
            return
        booting = action == BOOT_NOTIFICATION
        if booting:
            self._registered.clear()
            self.offset_at_boot_s = self._ctx.clock_offsets_s.get(self.id) or 0.0
            self.clock_offset.reset()   # a reboot may have set its clock
            self._offset_told, self._sets_told = None, 0
        else:
            self.clock_offset.observe_call(action, payload, self.last_seen)
            self._tell_clock_moved()
        try:
            await self._handle_call(Call(unique_id, action, payload))
        except OCPPError as schema_error:
            # out of the library: the request broke its schema, or (our bug) our answer did
            error = dialect.classify_schema_error(action, payload) or InternalError(
                description="the central system produced an invalid answer")
            if isinstance(error, InternalError):
                log.error("station %s: our %s answer failed validation: %s", self.id, action,
                          schema_error)
            log.warning("station %s: %s %s refused: %s %s", self.id, action, unique_id,
                        error.code, error.description)
            await self._send(dialect.call_error_frame(unique_id, error))
        finally:
            if booting:     # its answer (Accepted or Pending) or its CALLERROR has been sent
                self.refused_unregistered = False
                self._registered.set()

    def _tell_clock_moved(self) -> None:
        """Publish the station's clock offset when it moved by a second or more since last
        told (dispatch sends again what went out on another: `site/failsafe.py`)."""
        offset_s = self.clock_offset.offset_s
        told = self._offset_told
        clock_set = self.clock_offset.sets != self._sets_told
        if clock_set:
            # set to ours without a reboot (`ClockOffset._set_to_ours`): in step now, whether or
            # not a lead of less than a transit is believed yet
            self._sets_told = self.clock_offset.sets
            offset_s = 0.0 if offset_s is None else offset_s
        elif offset_s is None or (told is not None and abs(offset_s - told) < 1.0):
            return
        self._offset_told = offset_s
        self._ctx.clock_offsets_s[self.id] = offset_s
        self._ctx.events.publish(StationClockMeasured(self.id, self.last_seen, offset_s,
                                                      clock_set=clock_set))

    async def _handle_call(self, msg: Call) -> None:
        """The library's `_handle_call` for a CALL our edge passed, in the same order with the
        same outcomes, without its per-message costs (issue 10, ~0.45 ms of a 1.6 MeterValues):
        the request's schema check compiled (`fast_schema`: the library's check decides
        whatever it does not pass), keys converted through a memo (`casing`), whether the
        handler takes `call_unique_id` read once per action (the library asked
        `inspect.signature` every time). A request that breaks its schema raises the
        library's OCPPError (`_route` answers it); a handler that raises is answered with the
        library's CALLERROR for it; our answer is checked before it is sent. Our handlers
        have no `@after` hooks."""
        handlers = self.route_map[msg.action]   # `_route` answered unknown actions already
        version = self.dialect.version
        await fast_schema.validate(msg, version)
        handler = handlers["_on_action"]
        try:
            if _takes_unique_id(type(self), msg.action, handler):
                response = handler(**snake_case_keys(msg.payload),
                                   call_unique_id=msg.unique_id)
            else:
                response = handler(**snake_case_keys(msg.payload))
            if inspect.isawaitable(response):
                response = await response
        except Exception as error:   # the library's answer to a failing handler
            log_unless_refused(log, error, "station %s: error while handling %s %s", self.id,
                               msg.action, msg.unique_id)
            await self._send(msg.create_call_error(error).to_json())
            return
        result = msg.create_call_result(snake_to_camel_case(remove_nones(
            serialize_as_dict(response))))
        await fast_schema.validate(result, version)
        await self._send(result.to_json())

    async def send_call(self, request: Any, *, wire: dict | None = None,
                        progress: CallProgress | None = None) -> Any:
        """Our call to the station: the typed answer, or StationCallError / StationTimeout /
        StationOffline; ValueError (before sending) for a request that breaks the schema.
        `wire`: the request's payload as it goes out, made by builders a test proves
        schema-valid for every input (the control ports' SetChargingProfile:
        tests/test_profiles_schema.py): sent as it is, not serialised and checked again -
        ~0.45 ms of the loop per profile, ~0.5 s of a DR event at 1 000 connectors (issue 10).
        The station's answer is checked either way. `progress`: how far it got (sent, or what
        it waited for), for a caller whose time runs out."""
        progress = progress if progress is not None else CallProgress()
        action = type(request).__name__
        if wire is not None:
            payload = wire   # nor a None in it to drop (the same tests)
        else:
            # the request as JSON once: checked, then sent as it is (the library's `call`
            # serialised it again)
            payload = camel_payload(request)
            await self._check_our_request(action, payload)
        if not self._registered.is_set():
            progress.behind = "its BootNotification (it connected again)"
        await self._wait_registered()     # bounded by the caller's timeout (registry.call)
        unique_id = str(self._unique_id_generator())
        try:
            answer, answered = await self._call_checked(action, payload, unique_id, progress)
        except OCPPError as error:
            if error.code == "SecurityError":
                self.refused_unregistered = True
            raise StationCallError(self.dialect.normalize_error_code(error.code),
                                   error.description, jsonable_details(error.details)) from None
        except asyncio.TimeoutError:
            raise StationTimeout(f"station {self.id} did not answer {action}") from None
        except ConnectionClosed:
            raise StationOffline(f"station {self.id} disconnected before {action} was "
                                 "sent") from None
        finally:
            self.remote_started.forget(unique_id)
            ahead = self.remote_started.ahead_done(unique_id)
            if ahead is not None:   # unanswered in time: granted only by a late Accepted
                await asyncio.shield(self._take_back(ahead))
        bad_time = self.dialect.bad_date_time_in_answer(action, answered)
        if bad_time is not None:
            raise StationAnswerInvalid(
                "TypeConstraintViolation",
                f"the station's {action} answer has a malformed {bad_time}", answered)
        return answer

    async def _wait_registered(self) -> None:
        """Until the station has been sent its boot's answer; a station accepted before that
        has sent nothing for `boot_wait_s` since it connected is taken as registered."""
        if self._registered.is_set():
            return
        if self._boot_wait_until is not None:
            left_s = self._boot_wait_until - asyncio.get_running_loop().time()
            try:
                await asyncio.wait_for(self._registered.wait(), max(left_s, 0.0))
                return
            except TimeoutError:
                if self._boot_wait_until is not None:   # still no frame from it
                    self._boot_wait_until = None
                    log.info("station %s: no BootNotification after its reconnection: taken "
                             "as registered", self.id)
                    self._registered.set()
        await self._registered.wait()

    async def _call_checked(self, action: str, payload: dict, unique_id: str,
                            progress: CallProgress) -> tuple[Any, dict]:
        """The library's `call` for a request already serialised (and checked): one call in
        flight per station (its lock), the answer awaited and, a CALLRESULT, checked against
        its schema (what a station sends is always checked), a CALLERROR raised; (the typed
        answer, its payload as the station sent it). The answer comes through `_answered`
        to a future of this call: the library's queue (a `wait_for` task per call) is not
        used - same outcomes: an answer with an id we are not waiting for is dropped, none
        within the response timeout raises TimeoutError."""
        message = Call(unique_id=unique_id, action=action, payload=payload)
        if self._call_lock.locked():
            progress.behind = (f"the answer to our {self._in_flight or 'call before it'} "
                               "(one call at a time)")
        async with self._call_lock:
            answered = self._answers[unique_id] = asyncio.get_running_loop().create_future()
            self._in_flight = action
            try:
                progress.sent = True    # from here it may reach the station
                # (a remote start's tag noted as it goes: its answer or its loss grants it;
                # granted before it goes, so our death before its answer grants it too)
                tag = self.remote_started.asked(unique_id, action, payload,
                                                self._ctx.clock.now())
                if tag is not None:
                    await self._grant_ahead(unique_id, tag)
                await self._send(message.to_json())
                async with asyncio.timeout(self._response_timeout):
                    response = await answered
            finally:
                self._answers.pop(unique_id, None)
                self._in_flight = None
            if isinstance(response, _Unreadable):
                raise StationAnswerUnreadable(
                    f"station {self.id} answered {action} with what is no answer "
                    f"({response.problem}): {response.frame}", response.frame)
            if response.message_type_id == MessageType.CallResult:
                response.action = action
                try:
                    await fast_schema.validate(response, self.dialect.version)
                except OCPPError as error:
                    raise self._answer_invalid(action, response.payload, error) from None
        if response.message_type_id == MessageType.CallError:
            try:
                error = response.to_exception()
            except UnknownCallErrorCodeError:
                # a code of its own (firmware's words): a refusal all the same, told as sent
                raise StationCallError(response.error_code, str(response.error_description),
                                       jsonable_details(response.error_details)) from None
            raise error
        answer = getattr(self._call_result, action)(**snake_case_keys(response.payload))
        return answer, response.payload

    def _answer_invalid(self, action: str, payload: dict,
                        error: OCPPError) -> StationAnswerInvalid:
        """A CALLRESULT its schema refuses: no CALLERROR of the station's. What is wrong with
        it in the description (the library's words say only that something is); the code the
        site has always seen for it (the library's, in this version's spelling)."""
        named = self.dialect.classify_schema_error(action, payload, MessageType.CallResult)
        cause = named.description if named is not None else error.description
        return StationAnswerInvalid(
            self.dialect.normalize_error_code(error.code),
            f"the station's {action} answer is not valid OCPP {self.dialect.version}: {cause}",
            payload)

    async def _answered(self, message: list) -> None:
        """A CALLRESULT or CALLERROR the edge passed (`inspect_frame`: its id a string, a
        CALLRESULT's payload an object, a CALLERROR's five elements), to the call waiting
        for it; one we are not waiting for (late, after its timeout) is dropped, as the
        library did."""
        unique_id = message[1]
        waiting = self._answers.get(unique_id)
        if waiting is None or waiting.done():
            late = self.remote_started.answered(unique_id, message[2]) \
                if message[0] == MessageType.CallResult else None
            if late is not None:
                # a remote start accepted after our timeout: the station starts it anyway
                log.warning("station %s: accepted remote start %s after our timeout: its tag "
                            "is granted all the same", self.id, unique_id)
                await self._grant(late)
                return
            # a slow station's answer after our timeout (OCPP-J allows it), or one to an id we
            # never sent: the station's doing, not an error of ours (session 32's judge: an
            # ERROR line per late answer)
            log.warning("station %s: ignoring an answer with unknown unique id %s (late, "
                        "after its call's timeout, or never asked)", self.id, unique_id)
            return
        if message[0] == MessageType.CallResult:
            # here, not when the caller wakes: the station's Authorize for a remote start may
            # be the next frame read
            tag = self.remote_started.answered(unique_id, message[2])
            ahead = self.remote_started.ahead_done(unique_id)
            if tag is not None:
                await self._grant(tag)
            elif ahead is not None:   # refused: what was written before the send goes
                await self._take_back(ahead)
            if not waiting.done():   # its time may have run out during the grant's commit
                waiting.set_result(CallResult(unique_id, message[2]))
        else:
            self.remote_started.answered(unique_id, None)   # refused: nothing to wait for
            ahead = self.remote_started.ahead_done(unique_id)
            if ahead is not None:
                await self._take_back(ahead)
            if not waiting.done():
                waiting.set_result(CallError(*message[1:]))

    async def grant_lost_remote_starts(self) -> None:
        """The connection closed: a remote start sent on it and not answered may have been
        taken - its answer lost with the connection - and the station's start comes on its
        next connection: granted as for a late Accepted (before, refused: Invalid /
        Unknown; tests/test_outside_s35_grants.py)."""
        for tag, sent_at in self.remote_started.lost():
            log.warning("station %s: a remote start of tag %s was not answered before its "
                        "connection closed: granted all the same", self.id, tag)
            await self._grant(tag, sent_at)   # its grace from when it was sent

    async def _grant(self, tag: str, since: datetime | None = None) -> None:
        """The tag of a remote start the station accepted: stored as granted here before its
        next frame is read and before the operator hears the answer, so neither a restart
        nor a reconnection loses it. A store that refuses writes loses the grant only (the
        start was accepted; the station's Authorize is answered as for any other tag)."""
        now = self._ctx.clock.now()
        since = now if since is None else since
        try:
            await self._ctx.store.run(StoreOp(
                store_grants.grant, self.id, tag, now=since,
                until=since + timedelta(seconds=REMOTE_START_GRACE_S)))
        except Exception as error:   # its call still gets its answer
            log_unless_refused(log, error, "station %s: could not store the grant of remote "
                               "start tag %s", self.id, tag)

    async def _grant_ahead(self, unique_id: str, tag: str) -> None:
        """Our remote start of `tag` is about to be sent: granted now (`store_grants.
        grant_ahead`), to be taken back if the station refuses it or does not answer in
        time. A store that refuses writes: sent all the same, granted as before (by its
        answer)."""
        since = self._ctx.clock.now()
        until = since + timedelta(seconds=REMOTE_START_GRACE_S)
        try:
            replaced = await self._ctx.store.run(StoreOp(
                store_grants.grant_ahead, self.id, tag, now=since, until=until))
        except Exception as error:   # the call still goes
            log_unless_refused(log, error, "station %s: could not store the grant of remote "
                               "start tag %s before sending it", self.id, tag)
            return
        self.remote_started.wrote_ahead(unique_id, (tag, since, until, replaced))

    async def _take_back(self, ahead) -> None:
        tag, since, until, replaced = ahead
        try:
            await self._ctx.store.run(StoreOp(store_grants.take_back, self.id, tag, now=since,
                                              until=until, replaced=replaced))
        except Exception as error:   # the tag stays granted for its grace: logged
            log_unless_refused(log, error, "station %s: could not take back the grant of "
                               "remote start tag %s", self.id, tag)

    def _answered_unreadable(self, unique_id: str, problem: str | None, raw: str) -> None:
        """An answer the edge could not read, under the id of a call waiting for it: that
        call has its answer now (StationAnswerUnreadable) - it waited for its timeout and was
        told the station did not answer."""
        waiting = self._answers.get(unique_id)
        if waiting is not None and not waiting.done():
            waiting.set_result(_Unreadable(problem or "unreadable", raw[:200]))

    async def _check_our_request(self, action: str, payload: dict) -> None:
        """A request that breaks the schema is our bug, not the station's: ValueError, not a
        StationCallError (the library would report it with the same codes a station uses)."""
        problem = await schema_problem(action, payload, self.dialect.version)
        if problem is not None:
            raise ValueError(f"invalid {action} request: {problem}")


    # -- what every version's handlers share --------------------------------------------------
    async def record_boot(self, payload: dict, *, vendor: str, model: str,
                          serial_number: str | None, firmware_version: str | None,
                          rebooted: bool = True) -> bool:
        """Store a BootNotification (Accepted for a declared station, else Pending) and, when
        the station `rebooted`, close its open sessions (a reboot ends them, as the ledger
        says); publish what changed. Returns whether the boot is accepted."""
        now = self._ctx.clock.now()
        accepted = self._station is not None
        status = "Accepted" if accepted else "Pending"
        closed = await self._ctx.store.run(StoreOp(
            ledger.boot, self.id, status, now, payload, vendor=vendor, model=model,
            serial_number=serial_number, firmware_version=firmware_version, rebooted=rebooted,
            max_power_w=self._max_power_w))
        self.boot_accepted = accepted
        log.info("station %s: BootNotification (%s %s) -> %s", self.id, vendor, model, status)
        self.publish_closed(closed, now)
        self._ctx.events.publish(StationBooted(self.id, now, accepted, vendor, model,
                                               firmware_version,
                                               tuple(c.transaction_id for c in closed)))
        return accepted

    async def record_status(self, connector_id: int, status: str, error_code: str,
                            at: datetime | None, info: str | None = None,
                            vendor_error_code: str | None = None,
                            reading: str | None = None) -> None:
        """Store a connector's status as of `at` (None: now; 2.0.1 names an EVSE and has no
        error code of its own), its stamp read against our clock as `reading` (None: `at`'s,
        `stamp_reading`), and publish `ConnectorStatusChanged`."""
        now = self._ctx.clock.now()
        at = at or now
        reading = reading or self.stamp_reading(at, now)
        await self._ctx.store.run(StoreOp(
            "set_connector_status", self.id, connector_id, status, error_code, info,
            vendor_error_code, at, now, reading == IN_STEP, self.in_step_s))
        self._ctx.events.publish(ConnectorStatusChanged(self.id, connector_id, status,
                                                        error_code, at, reading))

    @property
    def in_step_s(self) -> float:
        """A stamp this close to our clock as it comes is in step (latency, whole seconds)."""
        return max(CLOCK_AGREE_S, self.clock_offset.transit_s)

    def stamp_reading(self, at: datetime, received: datetime) -> str:
        """`clock_offset.stamp_reading` of a status's stamp: a station's clock set back to ours
        without a reboot must not make its fresh statuses history (`supersedes`)."""
        return stamp_reading(at, received, self.in_step_s)

    async def record_notification(self, kind: str, status: str) -> None:
        """A firmware / diagnostics / log status or a security event, in the station's history."""
        now = self._ctx.clock.now()
        await self._ctx.store.run(StoreOp("set_notification", self.id, kind, status, now))
        log.info("station %s: %s status %s", self.id, kind, status)

    async def id_tag_status(self, id_tag: str, transaction: str | None = None,
                            started: datetime | None = None) -> str | None:
        """The status of an id tag / token (the site file's tags are Accepted, then the store's
        `id_tags`, then one we remote-started on this station lately - now, or at `started`,
        the station's stamp of the start asking - or on `transaction`, the station's id of
        the transaction asking: `remote_started`), in any case (OCPP's id tags are
        case-insensitive); None: not known. The same rules for every version."""
        if self._ctx.site.accepts_id_tag(id_tag):
            return "Accepted"
        if started is not None:
            # the stamp is the station's clock, the grant's window ours: a station 2 min ahead
            # stamped a start 250 s into the 300 s grace at +370 s and was refused
            # (tests/test_outside_s35_grants.py)
            offset_s = self.clock_offset.offset_s
            if offset_s is None:
                offset_s = self._ctx.clock_offsets_s.get(self.id)
            if offset_s:
                started -= timedelta(seconds=offset_s)
        return await self._ctx.store.run(StoreOp(
            store_grants.id_tag_status, self.id, id_tag, self._ctx.clock.now(), transaction,
            started))

    def publish_reopened(self, session) -> None:
        log.warning("station %s: session %d is still running after a BootNotification: "
                    "reopened", self.id, session.transaction_id)
        self._ctx.events.publish(SessionStarted(
            self.id, session.connector_id, session.transaction_id, session.id_tag or "",
            session.meter_start_wh, from_db_time(session.start_time)
            or self._ctx.clock.now()))

    def publish_closed(self, closed: tuple[ledger.Closed, ...], at: datetime) -> None:
        for session in closed:
            log.warning("station %s: session %d closed without its stop (%s)", self.id,
                        session.transaction_id, session.reason)
            self._ctx.events.publish(SessionStopped(
                self.id, session.connector_id, session.transaction_id, at, session.energy_wh,
                session.reason, implicit=True))


# Our calls' unique ids: this process's random prefix and a counter - never reused on a
# connection (OCPP-J 4.1.4), at most 36 characters, without the library's uuid4 per call
# (a read of the OS's randomness each)
_ID_PREFIX = uuid.uuid4().hex[:12]
_ID_COUNTER = itertools.count(1)


@dataclass(frozen=True)
class _Unreadable:
    """What a call waiting for its answer is handed when the answer came unreadable."""

    problem: str
    frame: str      # its head, for the caller


def _next_unique_id() -> str:
    return f"{_ID_PREFIX}-{next(_ID_COUNTER)}"


_UNIQUE_ID_PARAMETER: dict[tuple[type, str], bool] = {}


def _takes_unique_id(cls: type, action: str, handler: Any) -> bool:
    """Whether `cls`'s handler of `action` has a `call_unique_id` parameter (the library
    passes it only then)."""
    key = (cls, action)
    try:
        return _UNIQUE_ID_PARAMETER[key]
    except KeyError:
        takes = _UNIQUE_ID_PARAMETER[key] = \
            "call_unique_id" in inspect.signature(handler).parameters
        return takes


def camel_payload(request: Any) -> dict:
    """Our request (a library payload dataclass) as the camelCase JSON object it is sent as;
    ValueError when it cannot be serialised - never an empty object, which the schema check
    would pass for actions without required fields (an empty ClearChargingProfile clears every
    profile on the station)."""
    try:
        return snake_to_camel_case(remove_nones(serialize_as_dict(request)))
    except TypeError as exc:
        raise ValueError(f"{type(request).__name__}: cannot be serialised: {exc}") from exc
