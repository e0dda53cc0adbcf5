"""REST routes of the site controller's limits: operator caps, utility demand-response events,
session needs (the live snapshot is `snapshot.py`). Documented in docs/api-site.md.

Every route needs a bearer token of a role that may call it (the roles are given where the
routes are added, below; the check and the error format are the whole API's, `auth.py` and
`errors.py`): reads need a reader, operator or admin token (demand-response events also a
utility token); caps and session needs an operator token; demand-response events an operator or
utility token. Missing or unknown token -> 401, a token of the wrong role -> 403.

Every write is an obligation: it is committed to the store before the 2xx (site/obligations.py);
when the store cannot take it the answer is 503 `store_unavailable` and nothing changed.
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import quote
from dataclasses import replace
from datetime import timedelta

from aiohttp import web

from smartcharge import store_obligations as ob
from smartcharge.api.auth import DR_READ, DR_WRITE, OPERATE, READ, route
from smartcharge.api.errors import ApiError
from smartcharge.api.site_common import applied as _applied
from smartcharge.api.site_common import commit as _commit, controller as _controller
from smartcharge.api.site_common import json_body as _json_body, number_field as _number
from smartcharge.api.site_common import known_fields
from smartcharge.api.site_common import stored_id, time_field as _time
from smartcharge.clock import format_ocpp_time
from smartcharge.site.limits import DemandResponseEvent, cap_schedule_limits
from smartcharge.site.obligations import event_row

OPENADR_PREFIX = "openadr:"     # smartcharge/openadr/signals.py: events from a VTN
# what each body takes, with what a GET answers (a client may PUT back what it read)
# (`applied`: what a write's answer says of the stations - sent back, it is ignored)
CAP_FIELDS = frozenset({"limit_w", "since", "applied"})
SINCE_SLACK_S = 60.0   # a client's clock a little ahead of ours
WINDOW_FIELDS = frozenset({"start", "end", "limit_w"})
EVENT_FIELDS = frozenset({"id", "start", "end", "limit_w", "reduction_w", "priority", "state",
                          "held_back_by", "applied"})
NEED_FIELDS = frozenset({"requested_wh", "departure"})


# --- operator caps --------------------------------------------------------------------------
def _cap_json(controller) -> dict:
    cap = controller.limits.operator_cap
    return {"limit_w": None if cap is None else cap.limit_w,
            "since": None if cap is None or cap.start is None else format_ocpp_time(cap.start)}


async def get_cap(request: web.Request) -> web.Response:
    return web.json_response(_cap_json(_controller(request)))


async def put_cap(request: web.Request) -> web.Response:
    body = await _json_body(request)
    known_fields(body, CAP_FIELDS)
    if "limit_w" not in body:
        raise ApiError(422, "invalid_body", "limit_w: required (watts, or null to clear)")
    limit_w = _number(body, "limit_w")
    controller = _controller(request)
    now = controller.clock.now()
    # `since` is what a GET answers (a client may PUT it back): in force from now whatever it
    # says - but one that is no time, or later than now, was taken as now: a cap meant for
    # later limited the cars at once
    since = _time(body, "since", required=False)
    if since is not None and since > now + timedelta(seconds=SINCE_SLACK_S):
        raise ApiError(422, "invalid_body", "since: the cap is in force from now; a cap from a "
                       "later time is a window of PUT /api/site/cap-schedule")
    await _commit(request, lambda: None,
                  lambda tx: ob.set_operator_cap(tx, limit_w, now, at=now),
                  lambda _: controller.limits.set_operator_cap(limit_w, since=now))
    controller.request_replan("operator cap")
    # answered once the stations hold profiles under it (or the bounded wait says who not)
    return web.json_response(_cap_json(controller) | {"applied": await _applied(request)})


def _schedule_json(controller) -> dict:
    return {"windows": [{"start": format_ocpp_time(w.start), "end": format_ocpp_time(w.end),
                         "limit_w": w.limit_w} for w in controller.limits.cap_schedule]}


async def get_cap_schedule(request: web.Request) -> web.Response:
    return web.json_response(_schedule_json(_controller(request)))


async def put_cap_schedule(request: web.Request) -> web.Response:
    body = await _json_body(request)
    known_fields(body, frozenset({"windows", "applied"}))
    windows = body.get("windows")
    if not isinstance(windows, list):
        raise ApiError(422, "invalid_body", "windows: required, a list of {start, end, limit_w}")
    parsed = []
    for i, window in enumerate(windows):
        if not isinstance(window, dict):
            raise ApiError(422, "invalid_body", f"windows[{i}]: must be an object")
        known_fields(window, WINDOW_FIELDS, f"windows[{i}].")
        try:
            parsed.append((_time(window, "start"), _time(window, "end"),
                           _number(window, "limit_w", required=True)))
        except ApiError as exc:
            raise ApiError(422, "invalid_body", f"windows[{i}].{exc.detail}") from None
    controller = _controller(request)
    try:
        cap_schedule_limits(parsed)
    except ValueError as exc:
        raise ApiError(422, "invalid_body", str(exc)) from None
    await _commit(request, lambda: None, lambda tx: ob.set_cap_windows(tx, parsed),
                  lambda _: controller.limits.set_cap_schedule(parsed))
    controller.request_replan("cap schedule")
    return web.json_response(_schedule_json(controller) | {"applied": await _applied(request)})


# --- demand response ------------------------------------------------------------------------
def _event_from(body: dict, event_id: str) -> DemandResponseEvent:
    # an event posted here limits the grid connection; one on a circuit comes from an OpenADR
    # program on that circuit (a circuit_id taken silently would limit the whole site)
    known_fields(body, EVENT_FIELDS | ({"circuit_id"} if body.get("circuit_id") is None
                                       else set()))
    # read-only fields go back as read; one that says what a PUT cannot do was ignored (a
    # "cancel" by PUT left the event in force, another id changed the URL's event)
    if body.get("state") == "cancelled":
        raise ApiError(422, "invalid_body", "state: read-only; DELETE "
                       "/api/demand-response/events/{id} cancels an event")
    if body.get("id") is not None and body["id"] != event_id:
        raise ApiError(422, "invalid_body", f"id: {body['id']!r} is not this event's id "
                       f"{event_id!r} (the URL's)")
    priority = body.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) \
            or not -2 ** 31 <= priority < 2 ** 31:
        raise ApiError(422, "invalid_body", "priority: must be a 32-bit integer (0 is the "
                       "highest)")
    try:
        return DemandResponseEvent(event_id=event_id, start=_time(body, "start"),
                                   end=_time(body, "end"), limit_w=_number(body, "limit_w"),
                                   reduction_w=_number(body, "reduction_w"), priority=priority)
    except ValueError as exc:
        raise ApiError(422, "invalid_body", str(exc)) from None


IDEMPOTENCY_KEY = "Idempotency-Key"
_KEY_MAX_CHARS = 255


def _idempotency_key(request: web.Request) -> str | None:
    """The client's Idempotency-Key header (IETF httpapi draft), if it sent one; 400 if it is
    not 1-255 printable ASCII characters."""
    key = request.headers.get(IDEMPOTENCY_KEY)
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > _KEY_MAX_CHARS or not all(" " <= c <= "~" for c in key):
        raise ApiError(400, "bad_request", f"{IDEMPOTENCY_KEY}: must be 1-{_KEY_MAX_CHARS} "
                       "printable ASCII characters (a UUID is a good one)")
    return key


def _check_addressable(event_id: str) -> None:
    """An id the API can answer with and address afterwards, before anything is stored: a
    control character cannot go into the 201's Location (the event was committed and the
    client got no answer at all), and a "." or ".." segment is removed from every URL."""
    if not event_id.isprintable():   # (an ASCII space is printable; a tab, NUL, U+2028 not)
        raise ApiError(422, "invalid_body", "id: must be printable text (no control characters "
                       "or line breaks)")
    if any(part in (".", "..") for part in event_id.split("/")):
        raise ApiError(422, "invalid_body", "id: a '.' or '..' path segment cannot be "
                       "addressed in a URL")


def _created(event: DemandResponseEvent, now, applied: dict) -> web.Response:
    # percent-encoded ("/" kept: the route takes it): "?", "#", "%", spaces, non-ASCII ids too
    return web.json_response(event.as_json(now) | {"applied": applied}, status=201, headers={
        "Location": "/api/demand-response/events/" + quote(event.event_id, safe="/")})


def _as_posted(event: DemandResponseEvent | None) -> DemandResponseEvent | None:
    """The event as its POST made it (before any cancellation), to tell a retry of it."""
    return None if event is None else replace(event, cancelled=False)


async def post_event(request: web.Request) -> web.Response:
    key = _idempotency_key(request)
    body = await _json_body(request)
    event_id = body.get("id")
    if event_id is not None and (not isinstance(event_id, str) or not event_id.strip()
                                 or len(event_id) > 100):
        raise ApiError(422, "invalid_body", "id: must be a non-empty string (up to 100 chars)")
    if event_id is not None:
        _check_addressable(event_id)
    if event_id is not None and event_id.startswith(OPENADR_PREFIX):
        raise ApiError(422, "invalid_body", f"id: {OPENADR_PREFIX}... names events the site's "
                       "OpenADR VENs received; choose another id")
    controller = _controller(request)
    # a name is drawn from the store's sequence inside the commit: dr-N never restarts
    event = _event_from(body, event_id or "dr-?")
    now = controller.clock.now()
    if event_id and key is None and _as_posted(controller.limits.event(event_id)) == event:
        # the same event posted again (a client that never got the 2xx, e.g. the server died
        # after the commit): it is stored; the same answer - as it is now: a cancelled one
        # stays cancelled (a late retry must not revive it) - not a conflict
        return _created(controller.limits.event(event_id), now, await _applied(request))
    # what the request means, not how it is written (5000 or 5000.0, Z or +00:00)
    digest = hashlib.sha256(json.dumps(
        [event_id, format_ocpp_time(event.start), format_ocpp_time(event.end), event.limit_w,
         event.reduction_w, event.priority]).encode()).hexdigest()

    def check() -> None:
        existing = controller.limits.event(event_id) if event_id else None
        if existing is not None and existing.cancelled and _as_posted(existing) != event:
            raise ApiError(409, "conflict", f"demand-response event {event_id!r} was "
                           "cancelled, which is final; post a new event under a new id")
        if existing is not None and not existing.cancelled and existing != event:
            raise ApiError(409, "conflict", f"demand-response event {event_id!r} exists; "
                           "PUT it to update")

    def work(tx) -> DemandResponseEvent | tuple[str, str]:
        # looked up inside the commit, under the writer's lock: racing retries make one event
        keyed = ob.keyed_event(tx, key) if key else None
        if keyed is not None:
            return keyed                      # (the first body's digest, its event's id)
        if event_id and _as_posted(controller.limits.event(event_id)) == event:
            return digest, event_id           # the event itself, posted again with a key
        named = replace(event, event_id=event_id or ob.new_event_id(tx, at=now))
        ob.save_event(tx, event_row(named), at=now)
        if key:
            ob.save_event_key(tx, key, digest, named.event_id, at=now)
        return named

    def apply(result) -> None:
        if isinstance(result, DemandResponseEvent):
            controller.limits.add_event(result)

    result = await _commit(request, check, work, apply)
    if isinstance(result, tuple):             # a retry: the event its first try made
        first_digest, made_id = result
        if first_digest != digest:
            raise ApiError(422, "idempotency_key_reused", f"{IDEMPOTENCY_KEY} {key!r} was "
                           f"first sent with another body (it made {made_id!r}); a new "
                           "request needs a new key")
        return _created(controller.limits.event(made_id), controller.clock.now(),
                        await _applied(request))
    controller.request_replan(f"dr:{result.event_id}")
    applied = await _applied(request)   # the stations told, before the 201 (site/applied.py)
    return _created(result, controller.clock.now(), applied)


async def list_events(request: web.Request) -> web.Response:
    controller = _controller(request)
    now = controller.clock.now()
    return web.json_response(controller.limits.events_json(now))


def _known_event(controller, event_id: str) -> DemandResponseEvent:
    event = controller.limits.event(event_id)
    if event is None:
        raise ApiError(404, "not_found", f"no demand-response event {event_id!r}")
    return event


async def get_event(request: web.Request) -> web.Response:
    controller = _controller(request)
    event = _known_event(controller, request.match_info["event_id"])
    return web.json_response(event.as_json(controller.clock.now()))


async def put_event(request: web.Request) -> web.Response:
    controller = _controller(request)
    event_id = request.match_info["event_id"]
    _known_event(controller, event_id)
    if event_id.startswith(OPENADR_PREFIX):    # its VTN modifies it; DELETE still cancels it
        raise ApiError(409, "conflict", f"{event_id!r} is an OpenADR event: its VTN modifies "
                       "it (DELETE cancels it here)")
    event = _event_from(await _json_body(request), event_id)
    now = controller.clock.now()

    def check() -> None:
        if _known_event(controller, event_id).cancelled:
            raise ApiError(409, "conflict", f"demand-response event {event_id!r} was "
                           "cancelled, which is final; post a new event under a new id")
    await _commit(request, check,
                  lambda tx: ob.save_event(tx, event_row(event), at=now),
                  lambda _: controller.limits.update_event(event))
    controller.request_replan(f"dr:{event_id}")
    applied = await _applied(request)
    return web.json_response(event.as_json(controller.clock.now()) | {"applied": applied})


async def delete_event(request: web.Request) -> web.Response:
    controller = _controller(request)
    event_id = request.match_info["event_id"]
    _known_event(controller, event_id)
    now = controller.clock.now()

    cancelled: list[DemandResponseEvent] = []

    def check() -> None:   # on the loop, under the write lock: what is cancelled is current
        cancelled[:] = [replace(_known_event(controller, event_id), cancelled=True)]

    await _commit(request, check,
                  lambda tx: ob.save_event(tx, event_row(cancelled[0]), at=now),
                  lambda _: controller.limits.cancel_event(event_id))
    event = cancelled[0]
    controller.request_replan(f"dr-cancel:{event_id}")
    return web.json_response(event.as_json(controller.clock.now()))


# --- sessions -------------------------------------------------------------------------------
async def put_session(request: web.Request) -> web.Response:
    transaction_id = stored_id(request.match_info["transaction_id"], "session")
    body = await _json_body(request)
    if "energy_wh" in body:
        # a session's energy_wh is what it was delivered (GET, the snapshot, this route's
        # answer): taken as the need, a session read and put back was stopped where it was
        raise ApiError(422, "invalid_body", "energy_wh: the energy delivered so far, not "
                       "settable; the energy wanted for the whole session is requested_wh [Wh]")
    known_fields(body, NEED_FIELDS)
    requested = _number(body, "requested_wh")
    departure = _time(body, "departure", required=False)
    if requested is None and departure is None:
        raise ApiError(422, "invalid_body", "give requested_wh (energy for the session [Wh]) "
                       "and/or departure (RFC 3339)")
    controller = _controller(request)
    now = controller.clock.now()
    need: dict = {}

    def check() -> None:
        session = controller.state.session_by_id(transaction_id)
        if session is None:
            raise ApiError(404, "not_found", f"no open session {transaction_id}")
        # the whole need is stored, as it will be after this change; an energy only when
        # someone told one (a site default stored here would come back as told)
        told_wh = session.requested_wh if session.need_told else None
        need.update(requested_wh=told_wh if requested is None else requested,
                    departure=session.departure if departure is None else departure)

    def apply(_) -> None:
        # the session may have stopped while the need was committed: the stored need is then
        # harmless (pruned at the next start) and the answer is that the session is gone
        if controller.state.session_by_id(transaction_id) is not None:
            controller.state.set_need(transaction_id, requested_wh=requested,
                                      departure=departure)

    await _commit(request, check,
                  lambda tx: ob.set_need(tx, transaction_id, **need, at=now), apply)
    session = controller.state.session_by_id(transaction_id)
    if session is None:
        raise ApiError(404, "not_found", f"session {transaction_id} stopped meanwhile")
    controller.request_replan(f"need:{transaction_id}")
    return web.json_response(session.as_json())


def add_routes(app: web.Application) -> None:
    # the obligation writer (WRITER) is the site's, made by setup_site_control
    route(app, "GET", "/api/site/cap", get_cap, READ)
    route(app, "PUT", "/api/site/cap", put_cap, OPERATE)
    route(app, "GET", "/api/site/cap-schedule", get_cap_schedule, READ)
    route(app, "PUT", "/api/site/cap-schedule", put_cap_schedule, OPERATE)
    route(app, "POST", "/api/demand-response/events", post_event, DR_WRITE)
    route(app, "GET", "/api/demand-response/events", list_events, DR_READ)
    route(app, "GET", "/api/demand-response/events/{event_id:.+}", get_event, DR_READ)
    route(app, "PUT", "/api/demand-response/events/{event_id:.+}", put_event, DR_WRITE)
    route(app, "DELETE", "/api/demand-response/events/{event_id:.+}", delete_event, DR_WRITE)
    route(app, "PUT", "/api/sessions/{transaction_id}", put_session, OPERATE)
