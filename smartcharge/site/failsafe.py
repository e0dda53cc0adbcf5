"""One station's setup, once per connection: its smart-charging capabilities (GetConfiguration)
and its fail-safe profiles - a ChargePointMaxProfile (its own maximum) and, per connector, a
TxDefaultProfile at stack level 0 with no end: its usable share of the tightest limit above it,
following the grid limit over time (a DR event announced ahead is in its periods), so the site
stays under every limit if smartcharge disappears.

A mixin of `Dispatcher` (needs `stations`, `topology`, `controller`, `clock`, `registry`,
`_latest`, `_wake`, `_call`, `_send`, `w_factor`, `_shares`, `_shares_for`)."""

from __future__ import annotations

import logging

from ocpp.v16 import call

from smartcharge.ocpp.v16 import profiles as P
from smartcharge.ocpp.registry import StationCallError, StationOffline, StationTimeout
from smartcharge.site.station_control import (StationControl, layer_from_payload,
                                              parse_capabilities)
from smartcharge.site.topology import ConnectorRef

log = logging.getLogger("smartcharge.site.dispatch")

CONFIG_KEYS = ["ChargeProfileMaxStackLevel", "ChargingScheduleMaxPeriods",
               "ChargingScheduleAllowedChargingRateUnit", "MaxChargingProfilesInstalled"]


class FailSafeSetup:
    async def setup_station(self, station_id: str, *, force: bool = False) -> None:
        """Capabilities and fail-safe defaults, once per connection (a BootNotification right
        after the connection does not send them twice); `force`: the station rebooted."""
        control = self.stations.get(station_id)
        if control is None:
            return
        async with control.lock:
            link = self.registry.get(station_id)
            if link is None or (control.setup_link is link and not force):
                return
            control.setup_link = link
            try:
                if control.caps is None:
                    control.caps = await self._read_capabilities(station_id)
                    if "A" not in control.caps.rate_units and control.caps.rate_units:
                        control.unit = control.caps.rate_units[0]
                # It may have forgotten its profiles, or kept them (OCPP keeps them through a
                # reboot): what it was told stays our upper bound of what it may draw (so a
                # lower plan is still ordered as a decrease), and everything is sent again.
                control.resend = True
                control.idle_sent.clear()
                control.default_layer.clear()
                await self._send_defaults(control)
            except (StationOffline, StationTimeout) as exc:
                control.setup_link = None
                log.info("station %s: setup postponed (%s)", station_id, exc)
                return
        for connector in self.topology.station(station_id).connectors:
            self.controller.set_uncontrollable(ConnectorRef(station_id, connector.connector_id),
                                               None)
        if self._latest is not None:
            self._wake.set()   # the current plan, through the ordered and gated round

    async def _read_capabilities(self, station_id: str) -> P.Capabilities:
        try:
            answer = await self._call(station_id, call.GetConfiguration(key=list(CONFIG_KEYS)))
        except StationCallError as exc:
            log.info("station %s: GetConfiguration refused (%s); assuming defaults",
                     station_id, exc)
            return P.Capabilities()
        values = {}
        for item in answer.configuration_key or []:
            key = item.get("key") if isinstance(item, dict) else getattr(item, "key", None)
            value = item.get("value") if isinstance(item, dict) else getattr(item, "value", None)
            values[key] = value
        return parse_capabilities(values)

    def default_root_w(self) -> float:
        return self.controller.default_root_limit_w()

    def _defaults_key(self) -> tuple:
        schedule = self.controller.default_root_schedule()
        return (schedule[0][1], tuple(schedule[1:]))

    async def _send_defaults(self, control: StationControl) -> None:
        station = self.topology.station(control.station_id)
        now = self.clock.now()
        key = self._defaults_key()
        schedule = [(now, key[0])] + list(key[1])
        offsets = [max((moment - now).total_seconds(), 0.0) for moment, _ in schedule]
        shares = [self._default_shares(root_w) for _, root_w in schedule]
        phases = max(c.phases for c in station.connectors)
        station_max_w = sum(self.topology.max_power_w(ConnectorRef(station.station_id,
                                                                   c.connector_id))
                            for c in station.connectors)
        if station.max_power_w is not None:
            station_max_w = min(station_max_w, station.max_power_w)
        if station.max_current_a is not None:
            station_max_w = min(station_max_w, station.max_current_a * phases * station.voltage_v)
        payload = P.charge_point_max_profile(now, station_max_w, unit=control.unit, phases=phases,
                                             voltage_v=station.voltage_v)
        await self._send(control, payload, alternatives=True)
        for connector in station.connectors:
            ref = ConnectorRef(station.station_id, connector.connector_id)
            factor = self.w_factor(control.unit, ref, connector.phases, False)
            payload = P.tx_default_profile(
                connector.connector_id, now, offsets, [s[ref][0] * factor for s in shares],
                unit=control.unit, phases=connector.phases, voltage_v=station.voltage_v,
                caps=control.caps)
            if await self._send(control, payload, alternatives=True) == "Accepted":
                control.default_layer[connector.connector_id] = layer_from_payload(
                    control.last_payload)
        control.defaults_root_w = key[0]
        control.defaults_key = key

    def _default_shares(self, root_w: float) -> dict:
        if self._shares_for != root_w:
            self._shares, self._shares_for = self.topology.default_shares(root_w), root_w
        return self._shares
