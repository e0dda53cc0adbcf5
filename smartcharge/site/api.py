"""REST routes of the site controller: operator caps, utility demand-response events, session
needs, and the live site snapshot (JSON and server-sent events). Documented in docs/api-site.md.

Reads (the snapshot, its stream, the event list) are open, as the dashboard reads them; every
write needs a bearer token: an operator token for caps and sessions, an operator or utility token
for demand-response events. Missing or unknown token -> 401, a token of the wrong role -> 403.
A site with no token configured at all (site file or environment) is open, like the rest of the
API.

Every write is an obligation: it is committed to the store before the 2xx (site/obligations.py);
when the store cannot take it the answer is 503 `store_unavailable` and nothing changed.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
from dataclasses import replace
from datetime import datetime

from aiohttp import web

from smartcharge import store_obligations as ob
from smartcharge.clock import format_ocpp_time, parse_ocpp_time
from smartcharge.site.limits import DemandResponseEvent, cap_schedule_limits
from smartcharge.site.obligations import ObligationWriter, StoreUnavailable, event_row

OPERATOR = "operator"
UTILITY = "utility"
KEEPALIVE_S = 15.0

_TOKENS = web.AppKey("site_api_tokens", dict)
_CLOSING = web.AppKey("site_api_closing", asyncio.Event)
_WRITER = web.AppKey("site_api_writer", ObligationWriter)
RETRY_AFTER_S = 5


def _error(status: int, error: str, detail: str) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status)


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.response = _error(status, error, detail)


def tokens_from(site, environ=os.environ) -> dict[str, set[str]]:
    def env(name):
        return {t.strip() for t in environ.get(name, "").split(",") if t.strip()}
    return {OPERATOR: set(site.operator_tokens) | env("SMARTCHARGE_OPERATOR_TOKENS"),
            UTILITY: set(site.utility_tokens) | env("SMARTCHARGE_UTILITY_TOKENS")}


def _require(request: web.Request, *roles: str) -> str:
    tokens = request.app[_TOKENS]
    if not any(tokens.values()):
        return roles[0]   # no token configured at all: open, like the rest of the API
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "send 'Authorization: Bearer <token>' "
                       "(an operator or utility API token)")
    token = token.strip().encode()
    held = [role for role, known in tokens.items()
            if any(hmac.compare_digest(token, k.encode()) for k in known)]
    if not held:
        raise ApiError(401, "unauthorized", "unknown API token")
    for role in roles:
        if role in held:
            return role
    raise ApiError(403, "forbidden", f"this needs a {' or '.join(roles)} token; yours is a "
                   f"{held[0]} token")


def _controller(request: web.Request):
    from smartcharge.site.setup import CONTROLLER
    return request.app[CONTROLLER]


async def _json_body(request: web.Request) -> dict:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "bad_request", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_body", "the body must be a JSON object")
    return body


def _time(body: dict, name: str, *, required: bool = True) -> datetime | None:
    if name not in body or body[name] is None:
        if required:
            raise ApiError(422, "invalid_body", f"{name}: required (RFC 3339 time with a zone)")
        return None
    try:
        return parse_ocpp_time(body[name])
    except ValueError as exc:
        raise ApiError(422, "invalid_body", f"{name}: {exc}") from None


def _number(body: dict, name: str, *, required: bool = False) -> float | None:
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(422, "invalid_body", f"{name}: required, a number of watts")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 \
            or value != value or value in (float("inf"),):
        raise ApiError(422, "invalid_body", f"{name}: must be a finite number >= 0")
    return float(value)


def handled(handler):
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.response
        except StoreUnavailable:
            response = _error(503, "store_unavailable", "the store could not commit this "
                              "change, so it was not made; try again later")
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
            return response
    wrapper.__name__ = handler.__name__
    return wrapper


# --- the snapshot ---------------------------------------------------------------------------
@handled
async def get_site(request: web.Request) -> web.Response:
    return web.json_response(_controller(request).snapshot())


async def site_stream(request: web.Request) -> web.StreamResponse:
    controller = _controller(request)
    closing = request.app[_CLOSING]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    version = controller.snapshot_version
    try:
        await _send_event(response, controller.snapshot())
        while not closing.is_set():
            got = await controller.next_snapshot(version, timeout_s=KEEPALIVE_S)
            if closing.is_set():
                break
            if got is None:
                await response.write(b": keepalive\n\n")
                continue
            version, snapshot = got
            await _send_event(response, snapshot)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return response


async def _send_event(response: web.StreamResponse, snapshot: dict) -> None:
    data = json.dumps(snapshot, separators=(",", ":"))
    await response.write(f"event: snapshot\ndata: {data}\n\n".encode())


# --- operator caps --------------------------------------------------------------------------
def _cap_json(controller) -> dict:
    cap = controller.limits.operator_cap
    return {"limit_w": None if cap is None else cap.limit_w,
            "since": None if cap is None or cap.start is None else format_ocpp_time(cap.start)}


@handled
async def get_cap(request: web.Request) -> web.Response:
    return web.json_response(_cap_json(_controller(request)))


@handled
async def put_cap(request: web.Request) -> web.Response:
    _require(request, OPERATOR)
    body = await _json_body(request)
    if "limit_w" not in body:
        raise ApiError(422, "invalid_body", "limit_w: required (watts, or null to clear)")
    limit_w = _number(body, "limit_w")
    controller = _controller(request)
    now = controller.clock.now()
    await request.app[_WRITER].commit(
        lambda: None, lambda tx: ob.set_operator_cap(tx, limit_w, now, at=now),
        lambda _: controller.limits.set_operator_cap(limit_w, since=now))
    controller.request_replan("operator cap")
    return web.json_response(_cap_json(controller))


def _schedule_json(controller) -> dict:
    return {"windows": [{"start": format_ocpp_time(w.start), "end": format_ocpp_time(w.end),
                         "limit_w": w.limit_w} for w in controller.limits.cap_schedule]}


@handled
async def get_cap_schedule(request: web.Request) -> web.Response:
    return web.json_response(_schedule_json(_controller(request)))


@handled
async def put_cap_schedule(request: web.Request) -> web.Response:
    _require(request, OPERATOR)
    body = await _json_body(request)
    windows = body.get("windows")
    if not isinstance(windows, list):
        raise ApiError(422, "invalid_body", "windows: required, a list of {start, end, limit_w}")
    parsed = []
    for i, window in enumerate(windows):
        if not isinstance(window, dict):
            raise ApiError(422, "invalid_body", f"windows[{i}]: must be an object")
        try:
            parsed.append((_time(window, "start"), _time(window, "end"),
                           _number(window, "limit_w", required=True)))
        except ApiError as exc:
            detail = json.loads(exc.response.text)["detail"]
            raise ApiError(422, "invalid_body", f"windows[{i}].{detail}") from None
    controller = _controller(request)
    try:
        cap_schedule_limits(parsed)
    except ValueError as exc:
        raise ApiError(422, "invalid_body", str(exc)) from None
    now = controller.clock.now()
    await request.app[_WRITER].commit(
        lambda: None, lambda tx: ob.set_cap_windows(tx, parsed),
        lambda _: controller.limits.set_cap_schedule(parsed))
    controller.request_replan("cap schedule")
    return web.json_response(_schedule_json(controller))


# --- demand response ------------------------------------------------------------------------
def _event_from(body: dict, event_id: str) -> DemandResponseEvent:
    priority = body.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ApiError(422, "invalid_body", "priority: must be an integer (0 is the highest)")
    try:
        return DemandResponseEvent(event_id=event_id, start=_time(body, "start"),
                                   end=_time(body, "end"), limit_w=_number(body, "limit_w"),
                                   reduction_w=_number(body, "reduction_w"), priority=priority)
    except ValueError as exc:
        raise ApiError(422, "invalid_body", str(exc)) from None


@handled
async def post_event(request: web.Request) -> web.Response:
    _require(request, UTILITY, OPERATOR)
    body = await _json_body(request)
    event_id = body.get("id")
    if event_id is not None and (not isinstance(event_id, str) or not event_id.strip()
                                 or len(event_id) > 100):
        raise ApiError(422, "invalid_body", "id: must be a non-empty string (up to 100 chars)")
    controller = _controller(request)
    # a name is drawn from the store's sequence inside the commit: dr-N never restarts
    event = _event_from(body, event_id or "dr-?")
    now = controller.clock.now()

    def check() -> None:
        existing = controller.limits.event(event_id) if event_id else None
        if existing is not None and not existing.cancelled:
            raise ApiError(409, "conflict", f"demand-response event {event_id!r} exists; "
                           "PUT it to update")

    def work(tx) -> DemandResponseEvent:
        named = replace(event, event_id=event_id or ob.new_event_id(tx, at=now))
        ob.save_event(tx, event_row(named), at=now)
        return named

    event = await request.app[_WRITER].commit(check, work, controller.limits.add_event)
    event_id = event.event_id
    controller.request_replan(f"dr:{event_id}")
    return web.json_response(event.as_json(controller.clock.now()), status=201,
                             headers={"Location": f"/api/demand-response/events/{event_id}"})


@handled
async def list_events(request: web.Request) -> web.Response:
    controller = _controller(request)
    now = controller.clock.now()
    return web.json_response([e.as_json(now) for e in controller.limits.events()])


def _known_event(controller, event_id: str) -> DemandResponseEvent:
    event = controller.limits.event(event_id)
    if event is None:
        raise ApiError(404, "not_found", f"no demand-response event {event_id!r}")
    return event


@handled
async def get_event(request: web.Request) -> web.Response:
    controller = _controller(request)
    event = _known_event(controller, request.match_info["event_id"])
    return web.json_response(event.as_json(controller.clock.now()))


@handled
async def put_event(request: web.Request) -> web.Response:
    _require(request, UTILITY, OPERATOR)
    controller = _controller(request)
    event_id = request.match_info["event_id"]
    _known_event(controller, event_id)
    event = _event_from(await _json_body(request), event_id)
    now = controller.clock.now()
    await request.app[_WRITER].commit(
        lambda: _known_event(controller, event_id),
        lambda tx: ob.save_event(tx, event_row(event), at=now),
        lambda _: controller.limits.update_event(event))
    controller.request_replan(f"dr:{event_id}")
    return web.json_response(event.as_json(controller.clock.now()))


@handled
async def delete_event(request: web.Request) -> web.Response:
    _require(request, UTILITY, OPERATOR)
    controller = _controller(request)
    event_id = request.match_info["event_id"]
    _known_event(controller, event_id)
    now = controller.clock.now()

    cancelled: list[DemandResponseEvent] = []

    def check() -> None:   # on the loop, under the write lock: what is cancelled is current
        cancelled[:] = [replace(_known_event(controller, event_id), cancelled=True)]

    await request.app[_WRITER].commit(
        check, lambda tx: ob.save_event(tx, event_row(cancelled[0]), at=now),
        lambda _: controller.limits.cancel_event(event_id))
    event = cancelled[0]
    controller.request_replan(f"dr-cancel:{event_id}")
    return web.json_response(event.as_json(controller.clock.now()))


# --- sessions -------------------------------------------------------------------------------
@handled
async def put_session(request: web.Request) -> web.Response:
    _require(request, OPERATOR)
    try:
        transaction_id = int(request.match_info["transaction_id"])
    except ValueError:
        raise ApiError(404, "not_found", "session ids are integers") from None
    body = await _json_body(request)
    requested = _number(body, "requested_wh")
    if requested is None:
        requested = _number(body, "energy_wh")
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
        # the whole need is stored, as it will be after this change
        need.update(requested_wh=session.requested_wh if requested is None else requested,
                    departure=session.departure if departure is None else departure)

    def apply(_) -> None:
        # the session may have stopped while the need was committed: the stored need is then
        # harmless (pruned at the next start) and the answer is that the session is gone
        if controller.state.session_by_id(transaction_id) is not None:
            controller.state.set_need(transaction_id, requested_wh=requested,
                                      departure=departure)

    await request.app[_WRITER].commit(
        check, lambda tx: ob.set_need(tx, transaction_id, **need, at=now), apply)
    session = controller.state.session_by_id(transaction_id)
    if session is None:
        raise ApiError(404, "not_found", f"session {transaction_id} stopped meanwhile")
    controller.request_replan(f"need:{transaction_id}")
    return web.json_response(session.as_json())


def add_routes(app: web.Application) -> None:
    app[_TOKENS] = tokens_from(app[_site_key()])
    app[_CLOSING] = asyncio.Event()
    app[_WRITER] = ObligationWriter(lambda: app[_store_key()])

    async def close_streams(app: web.Application) -> None:
        app[_CLOSING].set()
    app.on_shutdown.append(close_streams)
    r = app.router
    r.add_get("/api/site", get_site)
    r.add_get("/api/site/stream", site_stream)
    r.add_get("/api/site/cap", get_cap)
    r.add_put("/api/site/cap", put_cap)
    r.add_get("/api/site/cap-schedule", get_cap_schedule)
    r.add_put("/api/site/cap-schedule", put_cap_schedule)
    r.add_post("/api/demand-response/events", post_event)
    r.add_get("/api/demand-response/events", list_events)
    r.add_get("/api/demand-response/events/{event_id}", get_event)
    r.add_put("/api/demand-response/events/{event_id}", put_event)
    r.add_delete("/api/demand-response/events/{event_id}", delete_event)
    r.add_put("/api/sessions/{transaction_id}", put_session)


def _site_key():
    from smartcharge.appkeys import SITE
    return SITE


def _store_key():
    from smartcharge.appkeys import STORE
    return STORE
