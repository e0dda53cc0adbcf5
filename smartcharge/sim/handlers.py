"""The calls a central system can make to a simulated station, as `ocpp` v16 handlers.

Each handler answers from the station's state; what the answer leads to (a remote start or
stop, a reset, a triggered message) runs in the `after` hook, once the answer is sent, and never
awaits a call there: the `ocpp` library reads one inbound message at a time, so awaiting our own
call from inside a handler would deadlock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ocpp.exceptions import OccurenceConstraintViolationError
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action

from smartcharge.sim import configuration
from smartcharge.sim.strict import RefuseBeforeBoot

if TYPE_CHECKING:
    from smartcharge.sim.station import SimStation


class StationProtocol(RefuseBeforeBoot, ChargePoint):
    def __init__(self, station: SimStation, connection, response_timeout: float) -> None:
        super().__init__(station.spec.station_id, connection, response_timeout=response_timeout)
        self.station = station

    @on(Action.remote_start_transaction)
    def on_remote_start(self, id_tag, connector_id=None, charging_profile=None, **_):
        status = self.station.remote_start(id_tag, connector_id, charging_profile)
        return call_result.RemoteStartTransaction(status=status)

    @after(Action.remote_start_transaction)
    def after_remote_start(self, **_):
        self.station.run_deferred()

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id, **_):
        return call_result.RemoteStopTransaction(status=self.station.remote_stop(transaction_id))

    @after(Action.remote_stop_transaction)
    def after_remote_stop(self, **_):
        self.station.run_deferred()

    @on(Action.change_availability)
    def on_change_availability(self, connector_id, type, **_):
        status = self.station.change_availability(connector_id, type)
        return call_result.ChangeAvailability(status=status)

    @on(Action.reset)
    def on_reset(self, type, **_):
        return call_result.Reset(status="Accepted")

    @after(Action.reset)
    def after_reset(self, type, **_):
        # only once the answer is on the wire: a reset closes the connection
        self.station.request_reset(type)

    @on(Action.unlock_connector)
    def on_unlock(self, connector_id, **_):
        return call_result.UnlockConnector(status=self.station.unlock(connector_id))

    @after(Action.unlock_connector)
    def after_unlock(self, **_):
        self.station.run_deferred()

    @on(Action.trigger_message)
    def on_trigger(self, requested_message, connector_id=None, **_):
        self.station.triggers_received.append((str(requested_message), connector_id))
        status = self.station.trigger_status(requested_message, connector_id)
        return call_result.TriggerMessage(status=status)

    @after(Action.trigger_message)
    def after_trigger(self, requested_message, connector_id=None, **_):
        # the spec wants the answer before the triggered message
        if self.station.trigger_status(requested_message, connector_id) == "Accepted":
            self.station.trigger(requested_message, connector_id)

    @on(Action.get_configuration)
    async def on_get_configuration(self, key=None, **_):
        await self.station.hold_configuration_answer()
        keys = self.station.config
        most = int(keys["GetConfigurationMaxKeys"].value)
        if key and len(key) > most:
            # the spec leaves it open; strict firmware (EVerest's libocpp) refuses the request
            raise OccurenceConstraintViolationError(
                description=f"at most {most} keys (GetConfigurationMaxKeys)")
        wanted = list(keys) if not key else key
        known = [{"key": k, "readonly": keys[k].readonly, "value": keys[k].value}
                 for k in wanted if k in keys]
        unknown = [k for k in wanted if k not in keys]
        return call_result.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on(Action.change_configuration)
    def on_change_configuration(self, key, value, **_):
        status = configuration.change(self.station.config, key, value)
        if status == "Accepted":
            self.station.configuration_changed(key)
        return call_result.ChangeConfiguration(status=status)

    @on(Action.set_charging_profile)
    async def on_set_charging_profile(self, connector_id, cs_charging_profiles, **_):
        await self.station.hold_profile_answer()
        status = self.station.set_charging_profile(connector_id, cs_charging_profiles)
        return call_result.SetChargingProfile(status=status)

    @on(Action.clear_charging_profile)
    async def on_clear_charging_profile(self, id=None, connector_id=None,
                                        charging_profile_purpose=None, stack_level=None, **_):
        await self.station.hold_clear_answer()
        removed = self.station.clear_charging_profile(
            profile_id=id, connector_id=connector_id, purpose=charging_profile_purpose,
            stack_level=stack_level)
        return call_result.ClearChargingProfile(status="Accepted" if removed else "Unknown")

    @on(Action.get_composite_schedule)
    def on_get_composite_schedule(self, connector_id, duration, charging_rate_unit=None, **_):
        answer = self.station.composite_schedule(connector_id, duration, charging_rate_unit)
        if answer is None:
            return call_result.GetCompositeSchedule(status="Rejected")
        schedule_start, schedule = answer
        return call_result.GetCompositeSchedule(
            status="Accepted", connector_id=connector_id, schedule_start=schedule_start,
            charging_schedule=schedule)

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id, **_):
        return call_result.DataTransfer(status="UnknownVendorId")
