"""The WebSocket endpoint `/ocpp/{station_id}`: who may connect, which protocol, whose link.

Order of checks, all before the upgrade: the identity must be well-formed (`identity.py`: at
most 48 visible ASCII characters without ':' or '/'; else 400, and it is logged only escaped and
truncated, nothing is stored). With security profile 3 (`server.tls_client_ca`) the connection
must carry a client certificate verified by the TLS layer whose subject CN is that identity
(`client_cert.py`; else 403), and the certificate replaces the password. The identity must be
declared in the site file (else 404, unless `accept_unknown_stations`, then the station gets
Pending at boot; on a site where stations have passwords, without profile 3, an unknown
identity gets what a wrong password gets - 401, 429 after as many failures - so the answers do
not tell which identities exist: the OCPP-J 404 is a SHOULD). Without profile 3, a station with
a password must present HTTP Basic credentials with user = the identity in the URL (security
profile 1, or 2 over TLS), compared in constant time, or with scrypt in a worker thread when the site file holds a salted hash
(else 401; too many failures from one address inside a minute and it gets 429 for a back-off
period, see `smartcharge/auth_throttle.py`). A request that is no WebSocket upgrade gets 400
before anything is stored. Then the upgrade: the
subprotocol is ours to choose among those offered (`ocpp2.0.1` before `ocpp1.6`, see
`adapters.py`, which also names the adapter class for each); if the station offers none we speak, the handshake completes without the header and
the socket is closed at once (OCPP 1.6 test TC_088). A second connection with the same identity
replaces the first. aiohttp answers pings and sends ours; a peer that misses a pong is dropped.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import math
import sqlite3

from aiohttp import WSCloseCode, WSMsgType, web

from smartcharge.appkeys import CLOCK, EVENTS, REGISTRY, SITE, STORE
from smartcharge.credentials import is_hashed, verify_secret
from smartcharge.events import StationConnected, StationDisconnected
from smartcharge.model import Station
from smartcharge.auth_throttle import AuthThrottle
from smartcharge.ocpp.adapters import ADAPTER_CLASSES, PREFERENCE, choose_protocol
from smartcharge.ocpp.central import AdapterContext, ConnectionClosed
from smartcharge.ocpp.client_cert import certificate_identity
from smartcharge.ocpp.identity import is_valid_identity, loggable_identity
from smartcharge.ocpp.registry import StationLink
from smartcharge.store_ops import StoreClosed, StoreOp
from smartcharge.turns import TurnBudget

log = logging.getLogger(__name__)

SUPPORTED_PROTOCOLS = PREFERENCE   # best first: a station offering several gets the first
# what we read of one frame at all (a memory bound per connection): past it, aiohttp closes
# with 1009; up to it a frame over the edge's MAX_FRAME_CHARS (1 Mi) gets a CALLERROR
MAX_RECEIVED_BYTES = 4 << 20
AUTH_THROTTLE = web.AppKey("auth_throttle", AuthThrottle)
# every connection's inbound frames share it: a burst is handled a batch per turn (turns.py)
INBOUND = web.AppKey("inbound_budget", TurnBudget)
# station id -> its clock offset last measured, kept across its connections (central.py)
CLOCK_OFFSETS = web.AppKey("clock_offsets_s", dict)
# the station an unknown identity's credentials are checked against (unknown_refusal_decoy)
DECOY = web.AppKey("unknown_identity_decoy", Station)


class AiohttpConnection:
    """The `recv()`/`send()` pair the `ocpp` library expects, over an aiohttp WebSocket."""

    def __init__(self, ws: web.WebSocketResponse, station_id: str) -> None:
        self._ws = ws
        self._station_id = station_id

    async def recv(self) -> str:
        message = await self._ws.receive()
        if message.type == WSMsgType.TEXT:
            return message.data
        if message.type == WSMsgType.BINARY:
            # OCPP-J uses text frames; hand the bytes on as text: a message in them is taken
            # (refused, a billing message would be lost), what is not JSON the edge answers
            # (1.6: FormationViolation, 2.0.1: RpcFrameworkError)
            return message.data.decode("utf-8", errors="replace")
        if message.type == WSMsgType.ERROR:
            log.warning("station %s: WebSocket error: %s", self._station_id,
                        self._ws.exception())
        raise ConnectionClosed(message.type.name)

    async def send(self, text: str) -> None:
        if self._ws.closed:
            raise ConnectionClosed("closed")
        try:
            await self._ws.send_str(text)
        except ConnectionError as error:
            raise ConnectionClosed(str(error)) from None


async def _credentials_ok(request: web.Request, station_id: str, station: Station) -> bool:
    """HTTP Basic with user = the identity and the station's password (plaintext or hash)."""
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return False
    try:
        user, _, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
    except (binascii.Error, ValueError):
        return False
    user_ok = hmac.compare_digest(user, station_id.encode("utf-8"))
    stored = station.password or ""
    if is_hashed(stored):
        # scrypt costs tens of ms and 16 MiB: off the event loop, which carries every station
        password_ok = await asyncio.to_thread(verify_secret, stored, password)
    else:
        password_ok = verify_secret(stored, password)
    return user_ok and password_ok


async def _check_credentials(request: web.Request, station_id: str, station: Station, *,
                             known: bool = True) -> None:
    """Basic auth for a station with a password; failures per (address, identity) are
    throttled, with a far higher ceiling per address (stations behind one NAT share one).
    `known` False: an identity the site file does not list, checked against another
    station's password (`station`, its decoy) and refused all the same - the answers, the
    back-off and the time taken are a wrong password's (`unknown_refusal`)."""
    throttle = request.app[AUTH_THROTTLE]
    address = request.remote or "?"
    wait_s = throttle.retry_after_s(address, station_id)
    if wait_s is not None:   # refused before the (costly) check: a guess here costs us nothing
        raise web.HTTPTooManyRequests(headers={"Retry-After": str(math.ceil(wait_s))},
                                      text="too many failed logins for this identity from "
                                           "this address")
    if await _credentials_ok(request, station_id, station) and known:
        return
    if known:
        log.warning("station %s: refused, bad or missing credentials (from %s)",
                    station_id, address)
    if throttle.failed(address, station_id):
        log.warning("too many failed station logins as %s (or as any) from %s: refused for a "
                    "while", loggable_identity(station_id), address)
    raise web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Basic realm="smartcharge"'})


def _check_certificate(request: web.Request, station_id: str) -> None:
    """Security profile 3: a verified client certificate whose CN is the URL's identity."""
    common_name = certificate_identity(request)
    if common_name == station_id:
        return
    if common_name is None:
        log.warning("station %s: refused, no client certificate (from %s)", station_id,
                    request.remote)
    else:
        log.warning("station %s: refused, its certificate is for %s (from %s)", station_id,
                    loggable_identity(common_name), request.remote)
    raise web.HTTPForbidden(text="a client certificate whose CN is this identity is required")


async def ocpp_endpoint(request: web.Request) -> web.StreamResponse:
    app = request.app
    # a handshake is inbound work too: a boot storm accepted thousands in one turn of the loop
    # (issue 10); they share the frames' budget, first come first served (turns.py)
    await app[INBOUND].admit()
    site, registry, events, clock = app[SITE], app[REGISTRY], app[EVENTS], app[CLOCK]
    station_id = request.match_info["station_id"]
    if not is_valid_identity(station_id):
        # checked before the identity reaches the store or a log line (it is attacker text)
        log.warning("refused a malformed station identity %s (from %s)",
                    loggable_identity(station_id), request.remote)
        raise web.HTTPBadRequest(text="malformed charge point identity: at most 48 visible "
                                 "ASCII characters, no ':' or '/'")
    settings = site.server
    if settings.tls_client_ca:
        _check_certificate(request, station_id)
    station = site.station(station_id)
    if station is None and not site.accept_unknown_stations:
        log.warning("station %s: refused, not in the site file (from %s)", station_id,
                    request.remote)
        decoy = None if settings.tls_client_ca else request.app.get(DECOY)
        if decoy is not None:
            # stations with passwords: answered as a wrong password (401, or 429 after as
            # many tries), so a scanner learns nothing of which ids exist (the 404 the
            # OCPP-J handshake describes is a SHOULD)
            await _check_credentials(request, station_id, decoy, known=False)
        raise web.HTTPNotFound(text=f"unknown charge point identity {station_id!r}")
    if station is not None and station.password is not None and not settings.tls_client_ca:
        # profile 3: the certificate replaces it
        await _check_credentials(request, station_id, station)

    store = app[STORE]
    now = clock.now()
    # ours, not aiohttp's choice (it takes the station's first): the newest version we share
    protocol = choose_protocol(request.headers.get("Sec-WebSocket-Protocol"),
                               SUPPORTED_PROTOCOLS)

    ws = web.WebSocketResponse(protocols=(protocol,) if protocol else (), autoping=True,
                               heartbeat=settings.ping_interval_s or None,
                               max_msg_size=MAX_RECEIVED_BYTES)
    if not ws.can_prepare(request).ok:
        # a plain GET (a scanner, a browser): nothing is stored for it (with unknown stations
        # accepted, each new identity added a row)
        raise web.HTTPBadRequest(text="an OCPP-J connection is a WebSocket upgrade")
    boot_status = await _connecting(store, station_id, now, protocol)
    await ws.prepare(request)
    if protocol is None or ws.ws_protocol != protocol:
        offered = request.headers.get("Sec-WebSocket-Protocol", "(none)")
        log.warning("station %s: no common subprotocol (offered %s), closing", station_id,
                    offered)
        await ws.close(code=WSCloseCode.PROTOCOL_ERROR, message=b"no supported subprotocol")
        return ws

    adapter = ADAPTER_CLASSES[protocol](
        station_id, AiohttpConnection(ws, station_id),
        AdapterContext(site=site, store=store, events=events, clock=clock,
                       inbound=app[INBOUND], clock_offsets_s=app[CLOCK_OFFSETS]),
        boot_accepted=boot_status == "Accepted" and station is not None,
        response_timeout_s=settings.call_timeout_s, boot_wait_s=settings.boot_wait_s)
    close_reason = "closed"
    cancelled = False   # cancelled while this connection's end waited its turn

    async def close_socket(reason: str) -> None:
        nonlocal close_reason
        close_reason = reason
        if not ws.closed:
            await ws.close(code=WSCloseCode.GOING_AWAY, message=reason.encode()[:120])

    link = StationLink(station_id, protocol, adapter, settings.call_timeout_s, close_socket)
    previous = registry.attach(link)
    if previous is not None:
        log.warning("station %s: new connection from %s replaces the previous one", station_id,
                    request.remote)
        registry.retire(previous, "replaced")
    log.info("station %s: connected from %s (%s)", station_id, request.remote, protocol)
    events.publish(StationConnected(station_id, now, protocol))
    try:
        await adapter.start()
    except ConnectionClosed:
        pass
    except asyncio.CancelledError:
        close_reason = "server shutdown"
        raise
    finally:
        if close_reason != "server shutdown":
            # a connection's end is inbound work too: a network cut ends thousands at once, and
            # 256 ends a turn (the poll's bound) held the loop 40-60 ms (s38-stall); they
            # share the frames' budget, in order (turns.py)
            try:
                await app[INBOUND].admit()
            except asyncio.CancelledError:
                # cancelled meanwhile (the server stopping; aiohttp's handler cancellation, where
                # it is on, as the socket is lost): the end's work still runs, then it goes on
                cancelled = True
        link.mark_closed()
        if not ws.closed:
            await asyncio.shield(ws.close())
        if ws.close_code == WSCloseCode.ABNORMAL_CLOSURE and close_reason == "closed":
            close_reason = "ping timeout or broken connection"
        current = registry.detach(link)
        log.info("station %s: disconnected (%s, code %s)", station_id, close_reason,
                 ws.close_code)
        if close_reason != "server shutdown":
            await adapter.grant_lost_remote_starts()
        if current:   # a replaced link's successor is online: no disconnect to report
            events.publish(StationDisconnected(station_id, clock.now(), close_reason))
        if cancelled:
            raise asyncio.CancelledError
    return ws


async def _connecting(store, station_id: str, now, protocol: str | None) -> str | None:
    """Records the connection; the station's last boot status. A store that refuses commits
    (a full disk, its file changed under us) does not refuse the station: the handshake
    failed with a 500, so a station that reconnected then was neither answered nor
    controlled (tests/test_outside_s33_kills.py). Served all the same: its billing messages
    get CALLERRORs until the store takes them; its boot status read from the reader's
    connection (None: it boots again)."""
    try:
        # by name: the store's writer process takes it (a boot storm's handshakes off the
        # thread)
        return await store.run(StoreOp("station_connecting", station_id, now, protocol))
    except (StoreClosed, sqlite3.Error, OSError) as exc:
        log.error("station %s: its connection could not be recorded (%s); served all the "
                  "same", station_id, exc)
    try:
        return await store.read(lambda tx: tx.boot_status(station_id))
    except (StoreClosed, sqlite3.Error, OSError):
        return None


def unknown_refusal_decoy(site) -> Station | None:
    """The station whose password an unknown identity is checked against before its 401 (a
    hashed one where there is one: its scrypt takes the time a known station's check takes);
    None where no station has a password - there an unknown identity gets the spec's 404."""
    with_password = [s for s in site.stations if s.password is not None]
    hashed = [s for s in with_password if is_hashed(s.password)]
    return (hashed or with_password or [None])[0]


def add_routes(app: web.Application) -> None:
    app[AUTH_THROTTLE] = AuthThrottle(app[CLOCK])
    if SITE in app:
        decoy = unknown_refusal_decoy(app[SITE])
        if decoy is not None:
            app[DECOY] = decoy
    app[INBOUND] = TurnBudget()
    app[CLOCK_OFFSETS] = {}
    app.router.add_get("/ocpp/{station_id}", ocpp_endpoint)
