"""A small, strict OCPP 2.0.1 station for tests: `ocpp.v201.ChargePoint` over a real WebSocket
(subprotocol ocpp2.0.1), enforcing the K01 rules on every SetChargingProfile (`k01_table.py`),
answering GetVariables from its SmartChargingCtrlr, GetCompositeSchedule from its table, and the
remote commands - and recording every request it got. A real OCPP peer, not a mock: what it
refuses, a station in the field refuses."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
from ocpp.charge_point import snake_to_camel_case
from ocpp.exceptions import OccurrenceConstraintViolationError
from ocpp.routing import after, on
from ocpp.v201 import ChargePoint, call, call_result

from smartcharge.clock import format_ocpp_time
from smartcharge.sim.connection import WsConnection
from tests.k01_table import K01Table, composite_periods


@dataclass
class StationSetup:
    rate_units: str = "A,W"
    periods_per_schedule: int = 24
    entries: int = 20
    stack_levels: int = 3
    iso15118: bool = False
    refuse_get_variables: bool = False
    # DeviceDataCtrlr.ItemsPerMessage[GetVariables]: a longer request gets a CALLERROR
    # OccurrenceConstraintViolation (B06.FR.15 allows it)
    items_per_get_variables: int | None = None
    unknown_variables: set[str] = field(default_factory=set)
    advertised_units: str | None = None   # what RateUnit says (None: rate_units)
    refuse_zero_limit: bool = False       # a quirk of some firmware: a limit of 0 is refused
    # profiles it holds from before (evseId, camelCase profile), e.g. another CSMS's
    installed: list[tuple[int, dict]] = field(default_factory=list)
    # until its BootNotification is accepted it answers every request with SecurityError, as
    # a station does to a CSMS that talks to it before it is registered
    refuse_before_boot: bool = False
    # registered from an earlier connection (a reconnect without a reboot): no boot needed
    registered_from_before: bool = False


class Station201(ChargePoint):
    def __init__(self, station_id: str, connection, setup: StationSetup | None = None,
                 clock=None, response_timeout_s: float = 30.0):
        super().__init__(station_id, connection, response_timeout=response_timeout_s)
        self.setup = setup or StationSetup()
        self.clock = clock
        s = self.setup
        self.table = K01Table(max_stack_level=s.stack_levels, max_periods=s.periods_per_schedule,
                              rate_units=tuple(u.strip() for u in s.rate_units.split(",")),
                              entries=s.entries, iso15118=s.iso15118)
        for evse_id, profile in s.installed:
            self.table.profiles[profile["id"]] = (evse_id, profile)
        self.received: list[tuple[str, dict]] = []   # (action, camelCase payload)
        self.variables = {"SmartChargingCtrlr": {
            "Enabled": "true", "Entries": str(s.entries),
            "PeriodsPerSchedule": str(s.periods_per_schedule),
            "ProfileStackLevel": str(s.stack_levels),
            "RateUnit": s.advertised_units or s.rate_units,
            "LimitChangeSignificance": "0.1", "Phases3to1": "false"},
            "OCPPCommCtrlr": {"HeartbeatInterval": "300"}}
        self.got = asyncio.Event()
        self.registered = s.registered_from_before
        self.refused_before_boot: list[str] = []

    async def route_message(self, raw_msg):
        message = json.loads(raw_msg)
        if message[0] == 3 and {"currentTime", "interval", "status"} <= set(message[2]):
            # the answer to its BootNotification: registered from the moment it reads it
            self.registered = message[2]["status"] in ("Accepted", "Pending")   # B02
        if self.setup.refuse_before_boot and not self.registered and message[0] == 2:
            self.refused_before_boot.append(message[2])
            await self._send(json.dumps([4, message[1], "SecurityError",
                                         "not registered yet", {}]))
            return
        await super().route_message(raw_msg)

    def now(self) -> datetime:
        return self.clock.now() if self.clock is not None else datetime.now(UTC)

    def _got(self, action: str, payload: dict) -> None:
        self.received.append((action, snake_to_camel_case(payload)))
        self.got.set()

    def of(self, action: str) -> list[dict]:
        return [p for a, p in self.received if a == action]

    # --- what the station sends -------------------------------------------------------------
    async def boot(self):
        return await self.call(call.BootNotification(
            charging_station={"model": "Strict201", "vendor_name": "tests"},
            reason="PowerUp"))

    async def start_transaction(self, evse_id: int, id_token: str = "DRIVER-1",
                                transaction_id: str | None = None) -> str:
        """A transaction starts on an EVSE (TransactionEvent Started); returns its id."""
        tx = str(uuid.uuid4()) if transaction_id is None else transaction_id
        self.table.transactions[evse_id] = tx
        await self.call(call.TransactionEvent(
            event_type="Started", timestamp=format_ocpp_time(self.now()),
            trigger_reason="Authorized", seq_no=0,
            transaction_info={"transaction_id": tx, "charging_state": "Charging"},
            evse={"id": evse_id, "connector_id": 1},
            id_token={"id_token": id_token, "type": "ISO14443"},
            meter_value=[{"timestamp": format_ocpp_time(self.now()), "sampled_value": [
                {"value": 0.0, "context": "Transaction.Begin",
                 "measurand": "Energy.Active.Import.Register"}]}]))
        return tx

    async def notify_needs(self, evse_id: int, energy_wh: float, departure: datetime):
        self.table.needs_reported.add(self.table.transactions[evse_id])
        return await self.call(call.NotifyEVChargingNeeds(
            evse_id=evse_id, charging_needs={
                "requested_energy_transfer": "AC_three_phase",
                "departure_time": format_ocpp_time(departure),
                "ac_charging_parameters": {"energy_amount": int(energy_wh), "ev_min_current": 6,
                                           "ev_max_current": 32, "ev_max_voltage": 400}}))

    # --- smart charging ---------------------------------------------------------------------
    @on("SetChargingProfile")
    async def on_set_charging_profile(self, evse_id: int, charging_profile: dict, **_):
        self._got("SetChargingProfile", {"evse_id": evse_id, "charging_profile":
                                         charging_profile})
        profile = snake_to_camel_case(charging_profile)
        if self.setup.refuse_zero_limit and any(
                p["limit"] == 0 for sched in profile["chargingSchedule"]
                for p in sched["chargingSchedulePeriod"]):
            return call_result.SetChargingProfile(status="Rejected", status_info={
                "reason_code": "InvalidSchedule", "additional_info": "limit 0"})
        status, reason = self.table.set(evse_id, profile)
        info = {"reason_code": "InvalidProfile", "additional_info": reason} if reason else None
        return call_result.SetChargingProfile(status=status, status_info=info)

    @on("GetVariables")
    async def on_get_variables(self, get_variable_data: list, **_):
        self._got("GetVariables", {"get_variable_data": get_variable_data})
        if self.setup.refuse_get_variables:
            raise NotImplementedError("GetVariables")
        most = self.setup.items_per_get_variables
        if most is not None and len(get_variable_data) > most:
            raise OccurrenceConstraintViolationError(
                description=f"at most {most} items per GetVariablesRequest")
        out = []
        for item in get_variable_data:
            component, variable = item["component"]["name"], item["variable"]["name"]
            value = self.variables.get(component, {}).get(variable)
            unknown = value is None or variable in self.setup.unknown_variables
            result = {"attribute_status": "UnknownVariable" if unknown else "Accepted",
                      "component": item["component"], "variable": item["variable"]}
            if not unknown:
                result["attribute_value"] = value
            out.append(result)
        return call_result.GetVariables(get_variable_result=out)

    @on("SetVariables")
    async def on_set_variables(self, set_variable_data: list, **_):
        self._got("SetVariables", {"set_variable_data": set_variable_data})
        out = []
        for item in set_variable_data:
            component, variable = item["component"]["name"], item["variable"]["name"]
            known = variable in self.variables.get(component, {})
            if known:
                self.variables[component][variable] = item["attribute_value"]
            out.append({"attribute_status": "Accepted" if known else "UnknownVariable",
                        "component": item["component"], "variable": item["variable"]})
        return call_result.SetVariables(set_variable_result=out)

    @on("GetCompositeSchedule")
    async def on_get_composite_schedule(self, duration: int, evse_id: int,
                                        charging_rate_unit: str | None = None, **_):
        self._got("GetCompositeSchedule", {"duration": duration, "evse_id": evse_id})
        unit = charging_rate_unit or "A"
        start = self.now().replace(microsecond=0)
        periods = composite_periods(self.table, evse_id, start, duration, unit)
        if not periods:
            return call_result.GetCompositeSchedule(status="Rejected")
        return call_result.GetCompositeSchedule(status="Accepted", schedule={
            "evse_id": evse_id, "duration": duration,
            "schedule_start": format_ocpp_time(start), "charging_rate_unit": unit,
            "charging_schedule_period": [{"start_period": p["startPeriod"],
                                          "limit": p["limit"]} for p in periods]})

    @on("GetChargingProfiles")
    async def on_get_charging_profiles(self, request_id: int, charging_profile: dict,
                                       evse_id: int | None = None, **_):
        self._got("GetChargingProfiles", {"request_id": request_id,
                                          "charging_profile": charging_profile})
        found = self._matching(charging_profile, evse_id)
        return call_result.GetChargingProfiles(status="Accepted" if found else "NoProfiles")

    @after("GetChargingProfiles")
    async def report_charging_profiles(self, request_id: int, charging_profile: dict,
                                       evse_id: int | None = None, **_):
        """K09: one ReportChargingProfiles per EVSE, after the answer."""
        found = self._matching(charging_profile, evse_id)
        evses = sorted({evse for evse, _ in found})
        for n, evse in enumerate(evses):
            await self.call(call.ReportChargingProfiles(
                request_id=request_id, charging_limit_source="CSO", evse_id=evse,
                charging_profile=[p for e, p in found if e == evse],
                tbc=n < len(evses) - 1))

    def _matching(self, criteria: dict, evse_id: int | None) -> list[tuple[int, dict]]:
        ids = criteria.get("charging_profile_id")
        purpose = criteria.get("charging_profile_purpose")
        return [(evse, p) for evse, p in self.table.profiles.values()
                if (evse_id is None or evse == evse_id)
                and (ids is None or p["id"] in ids)
                and (purpose is None or p["chargingProfilePurpose"] == purpose)]

    @on("ClearChargingProfile")
    async def on_clear_charging_profile(self, charging_profile_id: int | None = None,
                                        charging_profile_criteria: dict | None = None, **_):
        self._got("ClearChargingProfile", {"charging_profile_id": charging_profile_id})
        c = charging_profile_criteria or {}
        hit = self.table.clear(charging_profile_id, c.get("evse_id"),
                               c.get("charging_profile_purpose"), c.get("stack_level"))
        return call_result.ClearChargingProfile(status="Accepted" if hit else "Unknown")

    # --- remote commands --------------------------------------------------------------------
    @on("RequestStartTransaction")
    async def on_request_start(self, id_token: dict, remote_start_id: int, **rest):
        self._got("RequestStartTransaction", {"id_token": id_token,
                                              "remote_start_id": remote_start_id, **rest})
        return call_result.RequestStartTransaction(status="Accepted")

    @on("RequestStopTransaction")
    async def on_request_stop(self, transaction_id: str, **_):
        self._got("RequestStopTransaction", {"transaction_id": transaction_id})
        known = transaction_id in self.table.transactions.values()
        return call_result.RequestStopTransaction(status="Accepted" if known else "Rejected")

    @on("ChangeAvailability")
    async def on_change_availability(self, operational_status: str, **rest):
        self._got("ChangeAvailability", {"operational_status": operational_status, **rest})
        return call_result.ChangeAvailability(status="Accepted")

    @on("Reset")
    async def on_reset(self, type: str, **rest):
        self._got("Reset", {"type": type, **rest})
        return call_result.Reset(status="Accepted")

    @on("UnlockConnector")
    async def on_unlock(self, evse_id: int, connector_id: int, **_):
        self._got("UnlockConnector", {"evse_id": evse_id, "connector_id": connector_id})
        return call_result.UnlockConnector(status="Unlocked")

    @on("TriggerMessage")
    async def on_trigger(self, requested_message: str, **rest):
        self._got("TriggerMessage", {"requested_message": requested_message, **rest})
        return call_result.TriggerMessage(status="Accepted")

    @on("GetTransactionStatus")
    async def on_transaction_status(self, transaction_id: str | None = None, **_):
        self._got("GetTransactionStatus", {"transaction_id": transaction_id})
        return call_result.GetTransactionStatus(messages_in_queue=False, ongoing_indicator=True)


@contextlib.asynccontextmanager
async def station201(ws_url: str, station_id: str, password: str | None = None, *,
                     setup: StationSetup | None = None, clock=None, boot: bool = True,
                     response_timeout_s: float = 30.0):
    """Connect a strict 2.0.1 station to `ws_url/station_id` (security profile 1 with a
    password), boot it, run it; closed on exit."""
    headers = {}
    if password is not None:
        token = base64.b64encode(f"{station_id}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{ws_url}/{station_id}", protocols=("ocpp2.0.1",),
                                      headers=headers) as ws:
            assert ws.protocol == "ocpp2.0.1", ws.protocol
            station = Station201(station_id, WsConnection(ws), setup, clock,
                                 response_timeout_s)
            runner = asyncio.ensure_future(station.start())
            try:
                if boot:
                    await station.boot()
                yield station
            finally:
                runner.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await runner
