"""The site's OpenADR 3 VEN, written against the OpenADR 3.0.1 OpenAPI definition with aiohttp
(the Python OpenADR 3 client on PyPI needs Python >= 3.12; we stay on 3.11+).

- Auth: a bearer token from the site file, or OAuth2 client credentials: the token URL from
  the site file or the VTN's `GET /auth/server` (`tokenURL`), `POST` grant_type
  client_credentials; the token is renewed before it expires and once on a 401.
- The VEN finds itself (`GET /vens?venName=`) or registers (`POST /vens`, VEN_VEN_REQUEST);
  a VTN that keeps VEN objects to its business logic may refuse that: we poll all the same.
- It finds its program by `programName` (= the site file's `program`) in `GET /programs`, then
  polls `GET /events?programID=` every `poll_interval_s`: each event through `sink.apply`
  (stored before anything else); an event the VTN no longer lists was deleted (3.0.1 has no
  cancel status) and its limits are lifted. Only a complete, successful poll reconciles:
  an unreachable VTN changes nothing.
- Every `report_interval_s`, for each event in force now, a USAGE report (`POST /reports`): the
  site's energy since the last report [kWh] (the mean of the two readings times the time
  between them) and the limit in force [kW] as IMPORT_CAPACITY_LIMIT, one interval with its
  own intervalPeriod.
- With the program's `callback_url`, it subscribes to the program's EVENT changes (notify.py):
  a created, updated or deleted event arrives at once; polling goes on as the fallback, and a
  poll that was under way while a notification came leaves that event to the notification.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta

import aiohttp

from smartcharge.clock import format_ocpp_time
from smartcharge.openadr import notify
from smartcharge.openadr.runner import VenRunner
from smartcharge.openadr.v3_events import format_duration, parse_event, starts_now
from smartcharge.site.obligations import StoreUnavailable

log = logging.getLogger(__name__)
TOKEN_MARGIN_S = 30.0
PAGE = 50               # objects asked for per request (3.0.1 skip/limit)
SUBSCRIBE_RETRY_S = 300.0   # after a VTN refused our subscription, before we ask again


class VtnError(Exception):
    """The VTN did not answer as the specification says (status, body)."""


class Ven3(VenRunner):
    def __init__(self, program, sink, clock, store_of) -> None:
        super().__init__(program, sink, clock, store_of)
        self._token: str | None = program.bearer_token
        self._token_until = float("inf") if program.bearer_token else 0.0
        self._program_id: str | None = None
        self._events: dict[str, dict] = {}           # event id -> its last JSON
        self._anchors: dict[str, datetime] = {}      # event id -> "now" of a 0001-01-01 start
        self.callback_token: str | None = None       # of our subscription, once registered
        self._subscription_id: str | None = None
        self._subscribe_after_real = 0.0
        self._fresh: set[str] = set()   # events a notification brought since this poll began
        self._last_report: tuple[datetime, float] | None = None   # (site time, load W)
        self._next_report_real = 0.0

    async def _session(self) -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                try:
                    await self._poll(http)
                    await self._report(http)
                    self.contact(True)
                except (aiohttp.ClientError, asyncio.TimeoutError, VtnError, ValueError) as exc:
                    self.contact(False, f"{type(exc).__name__}: {exc}")
                    self._subscription_id = None   # a VTN back from an outage: check it again
                    self.status.subscribed = False
                await self.wait_interval(self.program.poll_interval_s)

    # --- HTTP -----------------------------------------------------------------------------
    async def _request(self, http, method: str, path: str, *, json=None, params=None,
                       retry: bool = True):
        headers = {"Authorization": f"Bearer {await self._bearer(http)}"}
        async with http.request(method, f"{self.program.vtn_url}{path}", json=json,
                                params=params, headers=headers) as resp:
            if resp.status == 401 and retry and self.program.client_id:
                self._token_until = 0.0         # expired early or revoked: one new token
                return await self._request(http, method, path, json=json, params=params,
                                           retry=False)
            if resp.status == 404 and method == "GET":
                return None
            if resp.status >= 400:
                raise VtnError(f"{method} {path}: HTTP {resp.status} {await resp.text()}")
            return await resp.json(content_type=None)

    async def _bearer(self, http) -> str:
        if self._token is not None and time.monotonic() < self._token_until:
            return self._token
        url = self.program.token_url
        if url is None:
            async with http.get(f"{self.program.vtn_url}/auth/server") as resp:
                if resp.status >= 400:
                    raise VtnError(f"GET /auth/server: HTTP {resp.status}")
                url = (await resp.json(content_type=None)).get("tokenURL")
            if not url:
                raise VtnError("GET /auth/server: no tokenURL")
        form = {"grant_type": "client_credentials", "client_id": self.program.client_id,
                "client_secret": self.program.client_secret}
        async with http.post(url, data=form) as resp:
            if resp.status >= 400:
                raise VtnError(f"token request: HTTP {resp.status}")
            body = await resp.json(content_type=None)
        self._token = body["access_token"]
        self._token_until = time.monotonic() + float(body.get("expires_in", 3600)) \
            - TOKEN_MARGIN_S
        return self._token

    # --- programs, VEN, events --------------------------------------------------------------
    async def _poll(self, http) -> None:
        if self.status.ven_id is None:
            await self._find_or_register(http)
        if self._program_id is None:
            programs = await self._get_all(http, "/programs", {})
            found = [p for p in programs if p.get("programName") == self.program.program]
            if not found:
                raise VtnError(f"the VTN has no program named {self.program.program!r}")
            self._program_id = found[0]["id"]
        if self.program.callback_url and self._subscription_id is None \
                and time.monotonic() >= self._subscribe_after_real:
            await self._subscribe(http)
        self._fresh = set()
        events = await self._get_all(http, "/events", {"programID": self._program_id})
        listed = {str(e["id"]): e for e in events if isinstance(e, dict) and "id" in e}
        for event_id, event in listed.items():
            if self._events.get(event_id) != event and event_id not in self._fresh:
                await self._apply(event)
        in_force = self.sink.events_in_force(self.program, self.clock.now())
        for gone in (in_force | set(self._events)) - set(listed) - self._fresh:
            await self._lift(gone)                        # deleted by the VTN: cancelled

    async def _lift(self, event_id: str) -> None:
        await self.sink.lift(self.program, event_id)
        self.status.opts.pop(event_id, None)
        self._events.pop(event_id, None)
        self._anchors.pop(event_id, None)

    # --- subscriptions (notify.py) ----------------------------------------------------------
    async def _subscribe(self, http) -> None:
        """Register our subscription, or update the one a previous run left (new token)."""
        token = self.callback_token or notify.new_token()
        url = notify.callback_url(self.program.callback_url, self.program.program)
        body = notify.subscription_body(self.program.ven_name, self._program_id, url, token)
        try:
            found = await self._get_all(http, "/subscriptions", {
                "programID": self._program_id, "clientName": self.program.ven_name})
            mine = [s for s in found if s.get("clientName") == self.program.ven_name
                    and any(op.get("callbackUrl") == url
                            for op in s.get("objectOperations") or [])]
            self.callback_token = token    # before the VTN may call: it may do so at once
            if mine:
                saved = await self._request(http, "PUT", f"/subscriptions/{mine[0]['id']}",
                                            json=body)
            else:
                saved = await self._request(http, "POST", "/subscriptions", json=body)
            self._subscription_id = str((saved or {}).get("id") or (mine or [{}])[0].get("id"))
            self.status.subscribed = True
            log.info("openadr %s: subscribed to event changes at %s", self.program.program, url)
        except VtnError as exc:     # a VTN without subscriptions for VENs: polling serves
            self.status.subscribed = False
            self._subscribe_after_real = time.monotonic() + SUBSCRIBE_RETRY_S
            log.warning("openadr %s: no subscription (%s); polling only", self.program.program,
                        exc)

    async def notified(self, operation: str, event: dict) -> bool:
        """A notification from the VTN (already authenticated): False if it could not be
        stored."""
        event_id = str(event.get("id"))
        if self._program_id is None or str(event.get("programID")) != self._program_id:
            return True                     # not our program's: nothing to do
        self._fresh.add(event_id)
        if operation == "DELETE":
            await self._lift(event_id)
            return True
        if self._events.get(event_id) == event:
            return True
        return await self._apply(event)

    async def _get_all(self, http, path: str, params: dict) -> list:
        """Every page of a collection (3.0.1 `skip`/`limit`) until an empty one; a VTN that
        ignores them and sends the same page again ends the walk too."""
        out, seen = [], set()
        while True:
            page = await self._request(http, "GET", path,
                                       params={**params, "skip": len(out), "limit": PAGE})
            if page is None:
                return out
            if not isinstance(page, list):
                raise VtnError(f"GET {path}: not a list")
            fresh = [o for o in page if isinstance(o, dict) and o.get("id") not in seen]
            seen.update(o.get("id") for o in fresh)
            out.extend(fresh)
            if not fresh:     # an empty page: a VTN may cap `limit` lower than asked
                return out

    def _parse(self, event: dict):
        """The event as an AdrEvent; one that starts "now" keeps the moment it was first seen
        (after a restart: where its stored limits begin, less the randomised shift)."""
        now = None
        if starts_now(event):
            event_id = str(event.get("id"))
            now = self._anchors.get(event_id)
            if now is None:
                now = self.clock.now().replace(microsecond=0)
                stored = self.sink.first_start(self.program, event_id)
                if stored is not None:
                    probe = parse_event(self.program.program, event, now=now)
                    now = stored - timedelta(seconds=self.sink.shift_s(self.program, probe))
                self._anchors[event_id] = now
        return parse_event(self.program.program, event, now=now)

    async def _apply(self, event: dict) -> bool:
        """Store and apply one event; False if the store could not take it."""
        try:
            adr = self._parse(event)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # one event the VTN got wrong must not keep the others from being followed
            log.error("openadr %s/%s: event not understood, ignored: %s", self.program.program,
                      event.get("id"), exc)
            self._events[str(event.get("id"))] = event
            return True
        try:
            await self.sink.apply(self.program, adr)
        except StoreUnavailable:
            log.error("openadr %s/%s: the store could not take the event; it is tried again "
                      "at the next poll", self.program.program, adr.event_id)
            return False
        self._events[adr.event_id] = event
        self.status.opts[adr.event_id] = "optIn" if self.program.opt_in else "optOut"
        return True

    async def _find_or_register(self, http) -> None:
        try:
            vens = await self._request(http, "GET", "/vens",
                                       params={"venName": self.program.ven_name}) or []
            mine = [v for v in vens if v.get("venName") == self.program.ven_name]
            if not mine:
                mine = [await self._request(http, "POST", "/vens", json={
                    "objectType": "VEN_VEN_REQUEST", "venName": self.program.ven_name})]
            self.status.ven_id = str(mine[0]["id"])
        except VtnError as exc:    # the VTN's business logic may own VEN objects
            log.info("openadr %s: VEN not registered (%s); polling without", self.program
                     .program, exc)

    # --- reports ----------------------------------------------------------------------------
    async def _report(self, http) -> None:
        if time.monotonic() < self._next_report_real:
            return
        self._next_report_real = time.monotonic() + self.program.report_interval_s
        controller = self.sink.controller
        load_w = (await controller.site_reading_async()).load_w
        now = controller.clock.now()
        previous, self._last_report = self._last_report, (now, load_w)
        if previous is None or now <= previous[0]:
            return
        hours = (now - previous[0]).total_seconds() / 3600.0
        usage_kwh = (previous[1] + load_w) / 2.0 / 1000.0 * hours
        limit_w, _ = controller.effective_limit_now()
        for event_id in sorted(self._active_events(now)):
            payloads = [{"type": "USAGE", "values": [round(usage_kwh, 4)]}]
            if limit_w != float("inf"):
                payloads.append({"type": "IMPORT_CAPACITY_LIMIT",
                                 "values": [round(limit_w / 1000.0, 3)]})
            await self._request(http, "POST", "/reports", json={
                "objectType": "REPORT", "programID": self._program_id, "eventID": event_id,
                "clientName": self.program.ven_name, "reportName": "smartcharge usage",
                "payloadDescriptors": [
                    {"objectType": "REPORT_PAYLOAD_DESCRIPTOR", "payloadType": "USAGE",
                     "readingType": "DIRECT_READ", "units": "KWH"},
                    {"objectType": "REPORT_PAYLOAD_DESCRIPTOR",
                     "payloadType": "IMPORT_CAPACITY_LIMIT", "readingType": "DIRECT_READ",
                     "units": "KW"}],
                "resources": [{"resourceName": "site", "intervals": [{
                    "id": 0, "intervalPeriod": {"start": format_ocpp_time(previous[0]),
                                                "duration": format_duration(now - previous[0])},
                    "payloads": payloads}]}]})
            self.status.reports_sent += 1

    def _active_events(self, now: datetime) -> set[str]:
        in_force = self.sink.events_in_force(self.program)
        head = f"openadr:{self.program.program}/"
        return {e.event_id[len(head):].split("#")[0]
                for e in self.sink.controller.limits.events()
                if e.event_id.startswith(head) and not e.cancelled and e.start <= now < e.end
                and e.event_id[len(head):].split("#")[0] in in_force}
