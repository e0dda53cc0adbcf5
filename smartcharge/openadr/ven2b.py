"""The site's OpenADR 2.0b VEN, built on openleadr's `OpenADRClient` (its messages, XML
signatures, TLS, event bookkeeping and report scheduling) with our own loop around it:

- registration (oadrQueryRegistration, oadrCreatePartyRegistration, oadrRegisterReport,
  oadrRequestEvent) is retried every poll interval until the VTN answers - openleadr's own
  `run()` gives up for good when the VTN is down at start;
- oadrPoll at the VTN's requested frequency (the program's `poll_interval_s` until it said);
- every event through `sink.apply` (stored, and the stations told of what it changed, before it
  is answered) and answered optIn, or optOut
  where the operator configured it (or where the store could not take it);
- TELEMETRY_USAGE: the site's metered load (a reading at one instant, site/reading.py) and the
  limit in force, in kW, as often as the VTN asks for them.

If the VTN cannot be reached nothing changes: the events already received are in the store
and bind the site until they end; the VEN's state and last successful poll are in the snapshot.
Polling runs on real time (it is network cadence, not site time).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from openleadr import OpenADRClient, objects

from smartcharge.model import OpenAdrProgram
from smartcharge.openadr.runner import VenRunner
from smartcharge.openadr.v2b_events import parse_event
from smartcharge.site.obligations import StoreUnavailable

log = logging.getLogger(__name__)
# openleadr logs every report value and event at INFO, once a second with short report
# intervals: its warnings and errors are what an operator needs
logging.getLogger("openleadr").setLevel(logging.WARNING)
USAGE_SPECIFIER = "smartcharge-usage"


class _Client(OpenADRClient):
    """openleadr's client, telling the VEN how each request went."""

    def __init__(self, ven: Ven2b, **kwargs) -> None:
        super().__init__(**kwargs)
        self._ven = ven

    async def _perform_request(self, service, message):
        result = await super()._perform_request(service, message)
        if not result:     # openleadr returns a bare None for an empty body
            result = (None, {})
        self._ven.contact(result[0] is not None, f"{service}: no valid answer")
        if result[0] is not None and "oadrUpdateReport" in str(message):
            self._ven.status.reports_sent += 1
        return result


class Ven2b(VenRunner):
    def __init__(self, program: OpenAdrProgram, sink, clock, store_of) -> None:
        super().__init__(program, sink, clock, store_of)
        self.client: _Client | None = None

    def _make_client(self) -> _Client:
        p = self.program
        client = _Client(self, ven_name=p.ven_name, vtn_url=p.vtn_url,
                         ven_id=p.ven_id or self.status.ven_id, cert=p.cert, key=p.key,
                         ca_file=p.ca_file, vtn_fingerprint=p.vtn_fingerprint,
                         show_fingerprint=False, disable_signature=p.cert is None)
        client.add_handler("on_event", self._on_event)
        client.add_handler("on_update_event", self._on_event)
        rate = objects.SamplingRate(min_period=timedelta(seconds=1),
                                    max_period=timedelta(hours=1), on_change=False)
        for r_id, callback in (("site-load", self._load_kw), ("site-limit", self._limit_kw)):
            client.add_report(callback, resource_id=r_id, measurement="RealPower", unit="W",
                              scale="k", report_specifier_id=USAGE_SPECIFIER, r_id=r_id,
                              sampling_rate=rate, report_duration=timedelta(hours=1))
        return client

    async def _session(self) -> None:
        """Register, then poll until cancelled; on a lost registration, start over."""
        self.client = client = self._make_client()
        client.loop = asyncio.get_running_loop()   # openleadr's re-registration uses it
        try:
            while True:
                if client.registration_id is None:
                    await self._register(client)
                else:
                    await client._poll()
                await self.wait_interval(self._interval_s(client))
        finally:
            await _close(client)

    async def _register(self, client: _Client) -> None:
        _, answer = await client.query_registration()
        if not answer:
            return
        await client.create_party_registration(ven_id=client.ven_id,
                                               request_id=(answer.get("response") or {})
                                               .get("request_id"))
        if client.registration_id is None:
            return
        self.status.ven_id, self.status.registration_id = client.ven_id, client.registration_id
        await self.save_status()
        await client.register_reports(client.reports)
        if client.report_queue_task is None or client.report_queue_task.done():
            client.report_queue_task = asyncio.ensure_future(client._report_queue_worker())
        if not client.scheduler.running:
            client.scheduler.start()      # the report jobs openleadr schedules
        await client.sync_events()

    def _interval_s(self, client: _Client) -> float:
        asked = client.poll_frequency
        if isinstance(asked, timedelta) and asked.total_seconds() > 0:
            return asked.total_seconds()    # the VTN decides how often it is polled
        return self.program.poll_interval_s

    async def _on_event(self, event: dict) -> str:
        adr = parse_event(self.program.program, event)
        try:
            await self.sink.apply(self.program, adr, until_told=True)
        except StoreUnavailable:
            log.error("openadr %s/%s: the store could not take the event: opting out",
                      self.program.program, adr.event_id)
            self.status.opts[adr.event_id] = "optOut"
            return "optOut"
        opt = "optIn" if self.program.opt_in else "optOut"
        self.status.opts[adr.event_id] = opt
        return opt

    async def _load_kw(self) -> float:
        # (openleadr awaits a report callback that is a coroutine)
        return round((await self.sink.controller.site_reading_async()).load_w / 1000.0, 3)

    def _limit_kw(self) -> float:
        """The limit in force; with none, the most the site can draw (its connectors' maxima)."""
        controller = self.sink.controller
        limit_w, _ = controller.effective_limit_now()
        if limit_w == float("inf"):
            limit_w = controller.limits.uncapped_w
        return round(limit_w / 1000.0, 3)


async def _close(client: OpenADRClient) -> None:
    if client.scheduler.running:
        client.scheduler.shutdown(wait=False)
    if client.report_queue_task is not None:
        client.report_queue_task.cancel()
    if client.client_session is not None:
        await client.client_session.close()
