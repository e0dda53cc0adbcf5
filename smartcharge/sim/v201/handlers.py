"""The calls a central system can make to a simulated 2.0.1 station, as `ocpp.v201` handlers.

As for 1.6 (`sim/handlers.py`): each handler answers from the station's state; what the answer
leads to runs in the `after` hook, once the answer is sent, and never awaits a call there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ocpp.routing import after, on
from ocpp.v201 import ChargePoint, call_result
from ocpp.v201.enums import Action

from smartcharge.sim.v201 import device_model as dm
from smartcharge.sim.strict import RefuseBeforeBoot

if TYPE_CHECKING:
    from smartcharge.sim.v201.station import SimStation201


class StationProtocol201(RefuseBeforeBoot, ChargePoint):
    def __init__(self, station: SimStation201, connection, response_timeout: float) -> None:
        super().__init__(station.spec.station_id, connection, response_timeout=response_timeout)
        self.station = station

    @on(Action.request_start_transaction)
    def on_request_start(self, id_token, remote_start_id, evse_id=None, charging_profile=None,
                         **_):
        status, transaction_id = self.station.request_start(
            id_token["id_token"], remote_start_id, evse_id, charging_profile)
        return call_result.RequestStartTransaction(status=status, transaction_id=transaction_id)

    @after(Action.request_start_transaction)
    def after_request_start(self, **_):
        self.station.run_deferred()

    @on(Action.request_stop_transaction)
    def on_request_stop(self, transaction_id, **_):
        return call_result.RequestStopTransaction(
            status=self.station.request_stop(transaction_id))

    @after(Action.request_stop_transaction)
    def after_request_stop(self, **_):
        self.station.run_deferred()

    @on(Action.get_transaction_status)
    def on_transaction_status(self, transaction_id=None, **_):
        ongoing, queued = self.station.transaction_status(transaction_id)
        return call_result.GetTransactionStatus(messages_in_queue=queued,
                                                ongoing_indicator=ongoing)

    @on(Action.change_availability)
    def on_change_availability(self, operational_status, evse=None, **_):
        status = self.station.change_availability(operational_status == "Operative",
                                                  (evse or {}).get("id"))
        return call_result.ChangeAvailability(status=status)

    @on(Action.reset)
    def on_reset(self, type, evse_id=None, **_):
        return call_result.Reset(status=self.station.reset_status(type, evse_id))

    @after(Action.reset)
    def after_reset(self, type, evse_id=None, **_):
        # only once the answer is on the wire: a reset closes the connection
        if self.station.reset_status(type, evse_id) != "Rejected":
            self.station.reset(type)

    @on(Action.unlock_connector)
    def on_unlock(self, evse_id, connector_id, **_):
        return call_result.UnlockConnector(status=self.station.unlock(evse_id, connector_id))

    @after(Action.unlock_connector)
    def after_unlock(self, **_):
        self.station.run_deferred()

    @on(Action.trigger_message)
    def on_trigger(self, requested_message, evse=None, **_):
        self.station.triggers_received.append((str(requested_message), (evse or {}).get("id")))
        status = self.station.trigger_status(requested_message, (evse or {}).get("id"))
        return call_result.TriggerMessage(status=status)

    @after(Action.trigger_message)
    def after_trigger(self, requested_message, evse=None, **_):
        # the spec wants the answer before the triggered message
        evse_id = (evse or {}).get("id")
        if self.station.trigger_status(requested_message, evse_id) == "Accepted":
            self.station.trigger(requested_message, evse_id)

    @on(Action.get_variables)
    def on_get_variables(self, get_variable_data, **_):
        return call_result.GetVariables(
            get_variable_result=dm.get_results(self.station.variables, get_variable_data))

    @on(Action.set_variables)
    def on_set_variables(self, set_variable_data, **_):
        results, changed = dm.set_results(self.station.variables, set_variable_data)
        self.station.variables_changed(changed)
        return call_result.SetVariables(set_variable_result=results)

    @on(Action.set_charging_profile)
    async def on_set_charging_profile(self, evse_id, charging_profile, **_):
        await self.station.hold_profile_answer()
        status, info = self.station.set_charging_profile(evse_id, charging_profile)
        return call_result.SetChargingProfile(status=status, status_info=info)

    @after(Action.set_charging_profile)
    def after_set_charging_profile(self, **_):
        self.station.run_deferred()

    @on(Action.clear_charging_profile)
    async def on_clear_charging_profile(self, charging_profile_id=None,
                                        charging_profile_criteria=None, **_):
        await self.station.hold_clear_answer()
        removed = self.station.clear_profiles(charging_profile_id, charging_profile_criteria)
        return call_result.ClearChargingProfile(status="Accepted" if removed else "Unknown")

    @on(Action.get_charging_profiles)
    def on_get_charging_profiles(self, request_id, charging_profile, evse_id=None, **_):
        found = self.station.matching_profiles(evse_id, charging_profile)
        return call_result.GetChargingProfiles(status="Accepted" if found else "NoProfiles")

    @after(Action.get_charging_profiles)
    def after_get_charging_profiles(self, request_id, charging_profile, evse_id=None, **_):
        found = self.station.matching_profiles(evse_id, charging_profile)
        if found:
            self.station._spawn(self.station.report_profiles(request_id, found))

    @on(Action.get_composite_schedule)
    def on_get_composite_schedule(self, duration, evse_id, charging_rate_unit=None, **_):
        schedule = self.station.composite_schedule_201(evse_id, duration, charging_rate_unit)
        if schedule is None:
            return call_result.GetCompositeSchedule(status="Rejected")
        return call_result.GetCompositeSchedule(status="Accepted", schedule=schedule)

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id, **_):
        return call_result.DataTransfer(status="UnknownVendorId")
