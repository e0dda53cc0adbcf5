"""A small OpenADR 3.0.1 VTN for the tests, following the specification's REST resources and
objects (nothing on PyPI runs on Python 3.11): OAuth2 client credentials at `/auth/token`
(found through `GET /auth/server`), `programs`, `events`, `vens`, `reports`, `subscriptions`
(each created, updated or deleted event is POSTed to the subscribed callbackUrl as a 3.0.1
`notification`, with the subscription's bearer token), on 127.0.0.1.
Events are built like the OpenADR 3 user guide's examples: an event `intervalPeriod` with
consecutive intervals (24 x PT1H prices, PT30M capacity limits), or intervals with their own."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field
from datetime import datetime

import aiohttp
from aiohttp import web

from smartcharge.clock import format_ocpp_time
from tests.changes import wait_changed

CLIENT_ID, CLIENT_SECRET = "smartcharge-ven", "ven-secret-0123"


@dataclass
class Vtn3:
    url: str = ""
    programs: list[dict] = field(default_factory=list)
    events: dict[str, dict] = field(default_factory=dict)
    vens: list[dict] = field(default_factory=list)
    reports: list[dict] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)
    token_requests: int = 0
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    runner: web.AppRunner | None = None
    subscriptions: dict[str, dict] = field(default_factory=dict)
    deliveries: list[tuple[str, str, int]] = field(default_factory=list)  # (op, event, status)
    _sending: set = field(default_factory=set)
    event_polls: int = 0                    # GET /events answered

    async def wait_until(self, predicate, timeout_s: float = 20.0, what: str = "") -> None:
        await wait_changed(self.changed, predicate, timeout_s, what, "VTN 3")

    # --- the business logic's side ------------------------------------------------------
    def add_program(self, name: str) -> str:
        program_id = str(next(self.ids))
        self.programs.append({"id": program_id, "objectType": "PROGRAM", "programName": name,
                              "createdDateTime": format_ocpp_time(datetime.now().astimezone())})
        return program_id

    def add_event(self, program_id: str, name: str, start: datetime | str, duration: str,
                  payload_type: str, values: list[float], *, units: str | None = None,
                  priority: int | None = None) -> str:
        """An event with consecutive intervals of `duration` from `start`, one value each
        (`start` may be text: the user guide's "0001-01-01T00:00:00Z" is "now")."""
        event_id = str(next(self.ids))
        descriptor = {"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": payload_type}
        if units:
            descriptor["units"] = units
        if payload_type == "PRICE":
            descriptor["currency"] = "EUR"
        created = format_ocpp_time(datetime.now().astimezone())
        self.events[event_id] = {
            "id": event_id, "objectType": "EVENT", "programID": program_id,
            "eventName": name, "priority": priority,
            "createdDateTime": created, "modificationDateTime": created,
            "payloadDescriptors": [descriptor],
            "intervalPeriod": {"start": start if isinstance(start, str)
                               else format_ocpp_time(start), "duration": duration},
            "intervals": [{"id": i, "payloads": [{"type": payload_type, "values": [v]}]}
                          for i, v in enumerate(values)]}
        self._notify("POST", self.events[event_id])
        return event_id

    async def stop(self) -> None:
        """The VTN goes away (idempotent)."""
        for task in list(self._sending):
            task.cancel()
        if self.runner is not None:
            runner, self.runner = self.runner, None
            await runner.cleanup()

    def delete_event(self, event_id: str) -> None:
        self._notify("DELETE", self.events.pop(event_id))

    def update_event(self, event_id: str, values: list[float], at: datetime) -> None:
        """The business logic changes an event's values (PUT /events/{id}): one value per
        interval, a new modificationDateTime."""
        event = self.events[event_id]
        for interval, value in zip(event["intervals"], values, strict=True):
            interval["payloads"][0]["values"] = [value]
        event["modificationDateTime"] = format_ocpp_time(at)
        self._notify("PUT", event)

    # --- notifications (3.0.1 subscription callbacks) -----------------------------------
    def _notify(self, operation: str, event: dict) -> None:
        """POST a notification to every subscription of the event's program that asked for
        this operation on EVENT objects, with its bearer token."""
        for sub in list(self.subscriptions.values()):
            if sub.get("programID") not in (None, event["programID"]):
                continue
            for op in sub.get("objectOperations") or []:
                if "EVENT" in op.get("objects", []) and operation in op.get("operations", []):
                    task = asyncio.get_running_loop().create_task(self._deliver(
                        op["callbackUrl"], op.get("bearerToken"), operation, event))
                    self._sending.add(task)
                    task.add_done_callback(self._sending.discard)

    async def _deliver(self, url: str, token: str | None, operation: str, event: dict) -> None:
        body = {"objectType": "EVENT", "operation": operation, "object": event}
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(url, json=body, headers=headers) as resp:
                    status = resp.status
        except aiohttp.ClientError:
            status = 0
        self.deliveries.append((operation, event["id"], status))
        self.changed.set()

    # --- the REST resources -------------------------------------------------------------
    async def auth_server(self, request):
        return web.json_response({"tokenURL": f"{self.url}/auth/token"})

    async def token(self, request):
        form = await request.post()
        if (form.get("grant_type"), form.get("client_id"), form.get("client_secret")) != (
                "client_credentials", CLIENT_ID, CLIENT_SECRET):
            return web.json_response({"error": "invalid_client"}, status=401)
        self.token_requests += 1
        token = f"token-{self.token_requests}"
        self.tokens.add(token)
        return web.json_response({"access_token": token, "token_type": "Bearer",
                                  "expires_in": 3600})

    @web.middleware
    async def bearer(self, request, handler):
        if not request.path.startswith("/auth/"):
            header = request.headers.get("Authorization", "")
            if header.removeprefix("Bearer ") not in self.tokens:
                return web.json_response({"title": "Unauthorized", "status": 401},
                                         status=401)
        return await handler(request)

    @staticmethod
    def _page(request, objects: list) -> web.Response:
        """3.0.1 paging: skip, limit (here at most 10 per page, to make VENs page)."""
        skip = int(request.query.get("skip", 0))
        limit = min(int(request.query.get("limit", 10)), 10)
        return web.json_response(objects[skip:skip + limit])

    async def get_programs(self, request):
        return self._page(request, self.programs)

    async def get_events(self, request):
        program_id = request.query.get("programID")
        self.event_polls += 1
        return self._page(request, [e for e in self.events.values()
                                    if program_id is None or e["programID"] == program_id])

    async def get_vens(self, request):
        name = request.query.get("venName")
        return web.json_response([v for v in self.vens if name in (None, v["venName"])])

    async def post_ven(self, request):
        body = await request.json()
        ven = {"id": str(next(self.ids)), "objectType": "VEN", "venName": body["venName"]}
        self.vens.append(ven)
        self.changed.set()
        return web.json_response(ven, status=201)

    async def get_subscriptions(self, request):
        q = request.query
        return self._page(request, [
            s for s in self.subscriptions.values()
            if q.get("programID") in (None, s.get("programID"))
            and q.get("clientName") in (None, s.get("clientName"))])

    async def save_subscription(self, request):
        body = await request.json()
        if body.get("objectType") != "SUBSCRIPTION" or not body.get("objectOperations") or any(
                not op.get("callbackUrl") for op in body["objectOperations"]):
            return web.json_response({"title": "Bad Request", "status": 400}, status=400)
        sub_id = request.match_info.get("id") or str(next(self.ids))
        if request.method == "PUT" and sub_id not in self.subscriptions:
            return web.json_response({"title": "Not Found", "status": 404}, status=404)
        self.subscriptions[sub_id] = {**body, "id": sub_id}
        self.changed.set()
        return web.json_response(self.subscriptions[sub_id],
                                 status=201 if request.method == "POST" else 200)

    async def post_report(self, request):
        body = await request.json()
        if body.get("objectType") != "REPORT" or "eventID" not in body:
            return web.json_response({"title": "Bad Request", "status": 400}, status=400)
        body["id"] = str(next(self.ids))
        self.reports.append(body)
        self.changed.set()
        return web.json_response(body, status=201)


@contextlib.asynccontextmanager
async def vtn_3(port: int = 0):
    vtn = Vtn3()
    app = web.Application(middlewares=[vtn.bearer])
    app.router.add_get("/auth/server", vtn.auth_server)
    app.router.add_post("/auth/token", vtn.token)
    app.router.add_get("/programs", vtn.get_programs)
    app.router.add_get("/events", vtn.get_events)
    app.router.add_get("/vens", vtn.get_vens)
    app.router.add_post("/vens", vtn.post_ven)
    app.router.add_post("/reports", vtn.post_report)
    app.router.add_get("/subscriptions", vtn.get_subscriptions)
    app.router.add_post("/subscriptions", vtn.save_subscription)
    app.router.add_put("/subscriptions/{id}", vtn.save_subscription)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    vtn.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    vtn.runner = runner
    try:
        yield vtn
    finally:
        await vtn.stop()
