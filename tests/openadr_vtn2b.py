"""A real OpenADR 2.0b VTN for the tests: openleadr's `OpenADRServer` on 127.0.0.1 (plain
HTTP, no message signatures), accepting one VEN and recording what it says: registrations, the
opt answer per event, the TELEMETRY_USAGE values per r_id."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from openleadr import OpenADRServer, objects, utils

from tests.changes import wait_changed
from tests.sim_fixtures import free_port

VEN_ID = "ven-smartcharge-1"
PREFIX = "/OpenADR2/Simple/2.0b"
logging.getLogger("openleadr").setLevel(logging.WARNING)


@dataclass
class Vtn2b:
    server: OpenADRServer
    url: str
    registrations: list[dict] = field(default_factory=list)
    opts: dict[str, str] = field(default_factory=dict)
    reports: dict[str, list[tuple[datetime, float]]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    running: bool = True

    def _changed(self) -> None:
        self.changed.set()

    async def wait_until(self, predicate, timeout_s: float = 20.0, what: str = "") -> None:
        await wait_changed(self.changed, predicate, timeout_s, what, "VTN")

    # --- handlers -----------------------------------------------------------------------
    def on_create_party_registration(self, registration_info):
        self.registrations.append(registration_info)
        self._changed()
        return VEN_ID, f"reg-{len(self.registrations)}"

    def on_register_report(self, ven_id, resource_id, measurement, unit, scale,
                           min_sampling_interval, max_sampling_interval):
        def collect(values):
            self.reports.setdefault(resource_id, []).extend(values)
            self._changed()
        return collect, timedelta(seconds=1)

    def on_opt(self, ven_id, event_id, opt_type):
        self.opts[event_id] = opt_type
        self._changed()

    # --- events -------------------------------------------------------------------------
    def capacity_event(self, event_id: str, start: datetime, minutes: int, limit_kw: float,
                       priority: int = 0) -> None:
        """LOAD_DISPATCH setpoint in kW (itemBase powerReal, scale k) for one interval."""
        measurement = objects.Measurement(name="powerReal", description="RealPower", unit="W",
                                          scale="k", power_attributes=objects.PowerAttributes(
                                              hertz=50, voltage=230, ac=True))
        intervals = [objects.Interval(dtstart=start, duration=timedelta(minutes=minutes),
                                      signal_payload=limit_kw)]
        event = objects.Event(
            event_descriptor=objects.EventDescriptor(
                event_id=event_id, modification_number=0, market_context="http://dr.example",
                event_status="far", created_date_time=start, priority=priority),
            active_period=objects.ActivePeriod(dtstart=start,
                                               duration=timedelta(minutes=minutes)),
            event_signals=[objects.EventSignal(intervals=intervals, signal_name="LOAD_DISPATCH",
                                               signal_type="setpoint", signal_id=event_id + "-s",
                                               measurement=measurement)],
            targets=[{"ven_id": VEN_ID}], response_required="always")
        self.server.add_raw_event(ven_id=VEN_ID, event=event, callback=self.on_opt)

    def simple_event(self, event_id: str, start: datetime, minutes: int, level: int,
                     intervals: int = 1) -> None:
        """SIMPLE `level` in `intervals` consecutive intervals of `minutes` each."""
        self.server.add_event(ven_id=VEN_ID, event_id=event_id, signal_name="SIMPLE",
                              signal_type="level", callback=self.on_opt,
                              intervals=[{"dtstart": start + timedelta(minutes=minutes * k),
                                          "duration": timedelta(minutes=minutes),
                                          "signal_payload": float(level)}
                                         for k in range(intervals)])

    async def stop(self) -> None:
        """The VTN goes away (idempotent)."""
        if self.running:
            self.running = False
            await self.server.stop()

    def cancel(self, event_id: str) -> None:
        self.server.cancel_event(VEN_ID, event_id)

    def modify(self, event_id: str, payloads: list[float]) -> None:
        """A new payload per interval of the event's first signal, under the next
        modificationNumber (as openleadr's own cancel_event modifies an event)."""
        event = utils.find_by(self.server.events[VEN_ID], "event_descriptor.event_id",
                              event_id)
        for interval, payload in zip(event.event_signals[0].intervals, payloads, strict=True):
            utils.setmember(interval, "signal_payload", float(payload))
        utils.increment_event_modification_number(event)
        self.server.events_updated[VEN_ID] = True


@contextlib.asynccontextmanager
async def vtn_2b(port: int | None = None, poll_s: int = 1, *, ven_fingerprint=None, **tls):
    """`tls`: OpenADRServer's http_cert/http_key/http_ca_file (HTTPS, client certificates
    required) and cert/key (it signs its messages); with `ven_fingerprint` it checks the VEN's
    signatures against it."""
    port = port or free_port()
    server = OpenADRServer(vtn_id="TEST-VTN", http_host="127.0.0.1", http_port=port,
                           requested_poll_freq=timedelta(seconds=poll_s),
                           verify_message_signatures=ven_fingerprint is not None,
                           show_fingerprint=False, show_server_cert_domain=False,
                           ven_lookup=lambda ven_id: {"ven_id": VEN_ID, "ven_name": "site",
                                                      "fingerprint": ven_fingerprint,
                                                      "registration_id": "reg-1"}, **tls)
    scheme = "https" if tls.get("http_cert") else "http"
    vtn = Vtn2b(server, f"{scheme}://127.0.0.1:{port}{PREFIX}")
    server.add_handler("on_create_party_registration", vtn.on_create_party_registration)
    server.add_handler("on_register_report", vtn.on_register_report)
    await server.run()
    try:
        yield vtn
    finally:
        await vtn.stop()
