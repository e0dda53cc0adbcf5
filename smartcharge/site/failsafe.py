"""One station's setup, once per connection: its capabilities (what its port probes) and its
fail-safe schedules - its own maximum and, per connector, a default with no end: its usable share
of the tightest limit above it, following every node's limit over time (`failsafe_limits.py`:
the grid's and each circuit's, a DR event announced ahead on either is in its periods; the maximum
of a station with a connector the site file does not list is kept off every node above it,
`undeclared.py`), so the site stays under every limit if smartcharge disappears.

A set-up cut short (a call unanswered in time, the connection dropped) or whose default went
unanswered is tried again on the same connection with a bounded backoff (`_setup_given_up`).

A mixin of `Dispatcher` (needs `_setting_up` (a semaphore of SETUP_CONCURRENCY), `_setups_queued`, `_setup_retries`, `_tasks`, `share`, `settings`, `stations`, `topology`, `view`, `clock`, `registry`, `_latest`,
`_wake`, `ports`, `_port_settings`, `_voltage_v`, `_record`, `power_schedule`, `_shares`, `_report_uncontrollable`, `_held_offline`, `_held_version`, `_release_pending`, and
`HeldDefaults`)."""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import timedelta

from smartcharge import units
from smartcharge.clock import LAST_MOMENT
from smartcharge.ocpp.port import Answer, UnknownProtocol
from smartcharge.ocpp.registry import StationOffline, StationTimeout
from smartcharge.site import held_defaults, learned, steps, unbounded, undeclared
from smartcharge.site.failsafe_limits import node_limit_schedule
from smartcharge.site.installed_restore import ask_installed, connectors_to_ask
from smartcharge.site.sending import REFUSES, SILENT
from smartcharge.site.station_control import StationControl
from smartcharge.site.steps import Step
from smartcharge.site.topology import ConnectorRef

log = logging.getLogger("smartcharge.site.dispatch")

# Stations set up at once. A boot storm started every station's set-up as it booted: at 5 000
# stations a turn of the loop resumed 1 000-1 300 set-up requests (~0.2 s) while the stations'
# boots waited behind them (issue 10). The others wait for a slot (FIFO), each under its own lock.
SETUP_CONCURRENCY = 64
SHARES_KEPT = 16   # sets of node limits whose default shares are kept (a schedule's entries)
# A set-up given up (a call unanswered in time, the station busy under load) is tried again on
# the same connection: first a call timeout later, doubling up to this (real s). Before, nothing
# set it up again until it reconnected or rebooted: it held no fail-safe default meanwhile
# (tests/test_setup_retried.py)
SETUP_RETRY_MAX_S = 300.0


def default_in_force(control: StationControl, connector_id: int, now) -> bool:
    """True when nothing we sent above a connector's fail-safe default is in force now (no plan
    and no idle share, or they ended): a new default is then a change of what it may draw now,
    not only after the plans' common end."""
    for layer in (control.sent, control.idle_layer):
        above = layer.get(connector_id)
        if above is not None and above.expires > now:
            return False
    return True


def forget_installed(control: StationControl) -> None:
    """Nothing the station accepted from us is known to be in force any more (its profiles were
    cleared): no plan, idle share, fail-safe default nor maximum - each connector counts at its
    maximum until the station accepts them again."""
    for layer in (control.sent, control.idle_layer, control.idle_sent, control.default_layer,
                  control.default_sent):
        layer.clear()
    control.station_max = None
    control.defaults_key = None
    control.resend = True


class FailSafeSetup:
    async def setup_station(self, station_id: str, *, force: bool = False,
                            forget: bool = False, moved: bool = False) -> None:
        """Capabilities and fail-safe defaults, once per connection (a BootNotification right
        after the connection does not send them twice; cut short, tried again on it:
        `_setup_given_up`); `force`: the station rebooted;
        `forget`: its profiles were cleared - what it accepted is forgotten again under its
        lock (a round's request answered before the clear may note its acceptance after it);
        `moved`: its clock's offset became known (or moved) beyond the edge margin since what
        it holds was sent (`StationPort.sent_off_its_clock`: a set-up at its boot goes out
        before its stamps) - the defaults and every plan again, moved onto its clock."""
        control = self.stations.get(station_id)
        if control is None:
            return
        async with control.lock:
            link = self.registry.get(station_id)
            if link is None or (control.setup_link is link and not (force or moved)):
                return
            if moved and (control.port_link is not link or control.port is None
                          or not control.port.sent_off_its_clock()):
                return   # a new connection sets itself up; or sent again already
            if moved:
                control.port.sending_all_again()
                log.info("station %s: its clock is %+.0f s from ours: what it holds went out "
                         "on another offset, sent again on its clock", station_id,
                         link.clock_offset_s or 0.0)
            control.setup_link = link
            if forget:
                forget_installed(control)
            if force:
                control.port_link = None   # rebooted: its capabilities are read anew
            if control.port_link is not link:
                # a fresh port per connection: the protocol it negotiated picks the class
                try:
                    control.port = self.ports(link, self._record,
                                              voltage_v=self._voltage_v[station_id],
                                              unit=control.config_unit,
                                              settings=self._port_settings)
                except UnknownProtocol as exc:
                    control.port, control.port_link = None, None
                    log.error("station %s: not controlled: %s", station_id, exc)
                    return
                control.port_link = link
            self._setups_queued += 1
            unanswered: set[int] = set()
            try:
                # a decrease from the start (settling.py): until its defaults are out no raise
                # under its nodes is in force at once. Marked only once its capabilities were
                # read, a round in between (the plan gives others what its lowered default
                # will leave) sent CP2's raise in force at once beside CP1's car still on its
                # old 11 kW (tests/test_setup_decrease_settles.py, the round while its
                # capabilities are read); cut short, `finally` counts it from then
                self.decreased_at[station_id] = LAST_MOMENT
                async with self._setting_up:
                    await control.port.capabilities()
                    # It may have forgotten its profiles, or kept them (OCPP keeps them through
                    # a reboot): what it was told stays our upper bound of what it may draw (so
                    # a lower plan is still ordered as a decrease), and everything is sent
                    # again.
                    control.resend = True
                    control.idle_sent.clear()
                    control.default_layer.clear()
                    control.default_sent.clear()
                    # (still marked from the start: recorded only once all its defaults had
                    # gone out, a round whose first raise had asked before let CP2's raise in
                    # force 5 s after CP1's default was taken, its car still on 22 kW -
                    # tests/test_setup_decrease_recorded_first.py)
                    self.decreased_at[station_id] = LAST_MOMENT
                    # its lowered record waited for only where ask_installed will ask (a
                    # transaction from before this process: new ones have higher ids, so the
                    # answer holds through the sends); else queued with the others (s29-boot)
                    unanswered = await self._send_defaults(
                        control, queue_record=moved or not connectors_to_ask(self, control))
                    if unanswered:
                        # it may not have taken them (nor let go of what it held): held as
                        # when it is offline until a set-up's defaults are answered. Let go,
                        # the others' defaults were shared as if it had taken its share - a
                        # 29 kW cap left CP1 on 7.9 kW beside CP2's old 22 kW after a restart
                        # (tests/test_outside_s32_kills.py)
                        self.hold_offline(station_id)
                    else:
                        self.release_offline(station_id)
                    # a decrease like any other (settling.py): what it held before is not
                    # known here (a car whose TxProfile ran out while it was away draws its
                    # old default), so a raise relying on these waits the settle time - in
                    # force at once, it let CP2 raise beside CP1's car still on 11 kW under
                    # a 16 kW cap (tests/test_setup_decrease_settles.py)
                    self.decreased_at[station_id] = self.clock.now()
                    # after a restart: what the earlier process left installed, as the
                    # station says (before the round compares this station)
                    if not moved:
                        await ask_installed(self, control)
            except (StationOffline, StationTimeout) as exc:
                control.setup_link = None
                log.info("station %s: setup postponed (%s)", station_id, exc)
                self._setup_given_up(station_id, link)
                return
            else:
                if unanswered:
                    # a default unanswered (after its retries) may not be in the station (a
                    # frame lost): counted at its maximum here, it held none if we vanished,
                    # and being recorded as sent nothing sent it again until the limits moved
                    # (tests/test_setup_retried.py): the set-up is tried again
                    control.setup_link = None
                    log.info("station %s: setup postponed (no answer to the default of "
                             "connector(s) %s)", station_id,
                             ", ".join(map(str, sorted(unanswered))))
                    self._setup_given_up(station_id, link)
                else:
                    self._setup_retries.pop(station_id, None)   # set up: backoff anew
            finally:
                if self.decreased_at.get(station_id) == LAST_MOMENT:
                    # cut short (offline, an error): what went out settles from now
                    self.decreased_at[station_id] = self.clock.now()
                self._setups_queued -= 1
                if self._setups_queued == 0:
                    self._flush_releases()
                if self._latest is not None and self._setups_queued == 0:
                    # the current plan, through the ordered and gated round - once the set-ups
                    # queued with this one are done: in a boot storm each one's round ended
                    # the one before it mid-comparison, for as long as the storm's set-ups
                    # took (the stations run on their fail-safe defaults meanwhile)
                    self._wake.set()
        for connector in self.topology.station(station_id).connectors:
            ref = ConnectorRef(station_id, connector.connector_id)
            if self._controllable_after_setup(ref, unanswered):
                self._report_uncontrollable(ref, None)

    def _controllable_after_setup(self, ref: ConnectorRef, unanswered: set[int]) -> bool:
        """Whether a set-up's answers let a connector count as controllable again: a new
        connection, a reboot, the station answering again may have changed what it takes -
        but not when the set-up just met what made it uncontrollable: its fail-safe default
        refused by a connector that refuses every profile, or left unanswered by one that
        does not answer. Reported controllable all the same, a station refusing everything
        was planned at its car's draw once more after every set-up (a reconnect; on the same
        connection, a clock seen moved or a set-up tried again): it refused the decrease and
        every raise under its nodes was held for a round, its neighbours below their plans
        (tests/test_refusing_station_set_up_again.py; s32-disobey)."""
        why = self.view.uncontrollable.get(ref)
        if why is None:
            return True
        if ref.connector_id in unanswered:
            return not why.startswith(SILENT)
        if ref in self._unbounded:   # its default refused in this set-up (`_note_bounded`)
            return not why.startswith(REFUSES)
        return True

    def _hold_unanswered(self, control: StationControl) -> None:
        """A round's lowered default left unanswered: the station may still hold the higher
        one, and is held at it as an offline station is - the others' defaults share what it
        leaves - until a set-up of it, tried again after a backoff like one whose defaults went
        unanswered, has its defaults answered. As it was, the others' defaults were shared as
        if it had taken its share and nothing was sent again: a 30 kW cap left CP1 on 15 kW
        beside CP2's unanswered 22 kW (tests/test_outside_s32_kills.py). Its hold re-plans at
        once (learned.HeldIdle): left to the next round that came - after the set-up's backoff
        and its own call timeouts - CP1 stayed on 15 kW for another 9-30 s."""
        self.hold_offline(control.station_id)
        self._set_up_again(control, "a lowered fail-safe default went unanswered; held at "
                                    "what it may hold until it is set up again")

    def _resend_unanswered_raise(self, control: StationControl) -> None:
        """A round's raised default left unanswered: the station may hold the raise or still
        its lower default. Counted at the raise (the upper bound: the others' defaults leave
        it room), it is safe, but recorded as sent it was never sent again - a round compares
        what it was sent - so a station that did not take it kept the lower default for as
        long as the limits stayed, its room unusable once we are gone
        (tests/test_outside_s33_kills.py). Its set-up, which sends every default again, is
        tried again after a backoff, as for a lowered one left unanswered; not held (the
        raise is the most it holds)."""
        self._set_up_again(control, "a raised fail-safe default went unanswered; sent again "
                                    "by its set-up")

    def _set_up_again(self, control: StationControl, why: str) -> None:
        """Its set-up is tried again on its connection after a backoff (`_setup_given_up`)."""
        station_id = control.station_id
        link = self.registry.get(station_id)
        if link is not None and control.setup_link is link:
            control.setup_link = None
            log.info("station %s: %s", station_id, why)
            self._setup_given_up(station_id, link)

    def _setup_given_up(self, station_id: str, link) -> None:
        """Its set-up on `link` was cut short: tried again on it after a backoff (a call
        timeout, doubling up to SETUP_RETRY_MAX_S) while it stays connected - one retry
        waiting per station at most; a set-up under way when it comes makes it a no-op (its
        lock, `setup_link`). Only an unanswered call or a dropped connection get here: a
        station that answers Rejected / NotSupported (or a CALLERROR) is set up with what it
        said and not asked again."""
        if self.registry.get(station_id) is not link:
            return   # gone: its next connection sets itself up
        kept_link, failures, waiting = self._setup_retries.get(station_id, (None, 0, False))
        if kept_link is not link:
            failures, waiting = 0, False
        failures += 1
        self._setup_retries[station_id] = (link, failures, True)
        if waiting:
            return
        delay_s = min(self.settings.call_timeout_s * 2 ** (failures - 1), SETUP_RETRY_MAX_S)
        log.info("station %s: setup tried again in %.0f s (%d given up on this connection)",
                 station_id, delay_s, failures)
        self._tasks.spawn(self._setup_again(station_id, link, delay_s))

    async def _setup_again(self, station_id: str, link, delay_s: float) -> None:
        await asyncio.sleep(delay_s)   # real s, like the call timeouts it follows
        kept = self._setup_retries.get(station_id)
        if kept is None or kept[0] is not link:
            return   # set up meanwhile, or another connection's
        self._setup_retries[station_id] = (link, kept[1], False)
        if self.registry.get(station_id) is not link:
            del self._setup_retries[station_id]
            return
        await self.share.run(self.setup_station(station_id))

    def _defaults_key(self) -> tuple:
        """(every node's W limit now, later (moment, node limits) changes).

        The same until the limits change or the next change moment passes: kept until then.
        It covers every node (stations too) and a round asks it for every station, as does
        the fail-safe setup of every station of a boot storm: O(stations^2) (issue 10)."""
        now = self.clock.now()
        limits = self.view.limits
        cached = getattr(self, "_defaults_cache", None)
        # connectors the site file does not list (seen so far: the set only grows)
        seen = self.view.state.undeclared
        version = (limits.version, len(seen), self._unbounded_version, self._held_version)
        if cached is not None and cached[0] == version and now < cached[1]:
            return cached[2]
        # and the maximum of each idle connector whose station refused its default
        # (unbounded.py): all of it kept free above those stations
        reserves = undeclared.station_maxima_w(self.topology, seen) + \
            unbounded.station_reserves_w(self.topology, self._unbounded)
        schedule = [(moment, undeclared.take_off_w(self.topology, reserves, node_w))
                    for moment, node_w in node_limit_schedule(self.topology, limits, now)]
        # (the A limits never change over time: only their room for such stations, once)
        key = (schedule[0][1], tuple(schedule[1:]),
               undeclared.take_off_a(self.topology, reserves, None),
               self._held_key(schedule))
        changes = limits.change_times(now)
        until = min(changes) if changes else LAST_MOMENT
        self._defaults_cache = (version, until, key)
        return key

    def _wanted_defaults(self, control: StationControl) -> tuple[tuple, dict[int, Step]]:
        """(the limits' key, each connector's fail-safe default for it as W steps from now:
        its share of every set of node limits, from the moment that set begins)."""
        station = self.topology.station(control.station_id)
        now = self.clock.now()
        key = self._defaults_key()
        schedule = [(now, key[0])] + list(key[1])
        # the same key object until the limits or a held station change: its shares with it
        # (each lookup hashed every node's limits and every held connector, once per station)
        kept = getattr(self, "_shares_of_key", None)
        if kept is not None and kept[0] is key:
            shares = kept[1]
        else:
            shares = [self._default_shares(node_w, key[2], held)
                      for (_, node_w), held in zip(schedule, key[3])]
            self._shares_of_key = (key, shares)
        out = {}
        for connector in station.connectors:
            ref = ConnectorRef(station.station_id, connector.connector_id)
            out[connector.connector_id] = [(moment, s[ref][0])
                                           for (moment, _), s in zip(schedule, shares)]
        return key, out

    def _default_changes(self, control: StationControl) -> tuple[dict, dict]:
        """(what goes out with the decreases, with the increases): per connector, the default
        it would get now against the one it was sent, compared interval by interval like a
        plan. A connector whose default is the same gets nothing: a DR event on one feeder
        sent every station of the site new defaults (500 at 1 000 connectors, issue 10), and
        so did every moment a limit began or ended. One that lowers somewhere and raises
        elsewhere first gets the pointwise minimum (a decrease), then the new one."""
        key, wanted = self._wanted_defaults(control)
        now = self.clock.now()
        downs: dict[int, Step] = {}
        ups: dict[int, Step] = {}
        for connector_id, step in wanted.items():
            sent = control.default_sent.get(connector_id)
            if sent is None:   # never sent on this connection: counted at its maximum
                downs[connector_id] = step
                continue
            lowers, raises = steps.compare(sent, step, now)
            if lowers and raises:
                downs[connector_id] = steps.pointwise_min(sent, step, now, LAST_MOMENT)
                ups[connector_id] = step
            elif lowers:
                downs[connector_id] = step
            elif raises:
                ups[connector_id] = step
        # nothing to compare until the limits move again; changes found: compared again next
        # time (then up to date once they went out). Left at the key from before, limits
        # coming back to it (a DR event announced, then cancelled) skipped the comparison and
        # the event's lowered defaults stayed in the stations.
        control.defaults_key = key if not downs and not ups else None
        return downs, ups

    async def _send_defaults(self, control: StationControl, *, station_max: bool = True,
                             defaults: dict[int, Step] | None = None,
                             raising: bool = False, queue_record: bool = False,
                             refused: set[int] | None = None) -> set[int]:
        """The station's maximum (`station_max`: at setup; it never follows a limit) and the
        connectors' fail-safe defaults: `defaults` (W steps per connector), or every
        connector's for the limits' schedule now. `raising`: they raise what each connector
        had accepted - one left unanswered or cut off by a dropped connection may be in force
        all the same and counts as accepted (the upper bound), as a plan's raise does.
        `queue_record`: the lowered record after the answers is queued, not waited for (as in
        a round). Returns the connectors whose default went unanswered; `refused` (given)
        gets those whose station refused it."""
        station = self.topology.station(control.station_id)
        now = self.clock.now()
        key = None
        in_round = defaults is not None
        phases = max(c.phases for c in station.connectors)
        unanswered: set[int] = set()
        # what it may hold once these are sent, stored before they go (held_defaults.py); at
        # a set-up (`defaults` None) nothing it accepted is known - each connector is at its
        # maximum already, above any default - and its defaults are made after the awaits
        # below: made before them, a station set up meanwhile (one refusing its defaults,
        # whose maximum is then kept free) left this one a stale, larger share
        await self._record_held(control, defaults if defaults is not None else {})
        if station_max and not _room_for_station_max(control, len(station.connectors)):
            # its few slots go to the connectors' defaults: the maximum only repeats what the
            # station can draw, and in the one slot of a station holding one profile it left
            # every default refused (two such stations 44.2 kW on a 30 kW grid, for hours)
            station_max = False
            control.station_max = None
        if station_max:
            station_max_w = self.topology.station_max_w(station.station_id)
            station_max_a = units.w_to_a(station_max_w, phases, station.voltage_v)
            control.station_max = None   # until it is accepted (a refusal leaves none)
            # begun early like the defaults (edges.py): in force at once on a clock behind ours
            answer = await control.port.install_station_max(
                station_max_w, station_max_a, phases,
                now - timedelta(seconds=math.ceil(self.settings.edge_margin_s)))
            if answer is Answer.ACCEPTED:
                control.station_max = (station_max_w, station_max_a)
        if defaults is None:
            now = self.clock.now()
            key, defaults = self._wanted_defaults(control)
            await self._record_held(control, defaults)   # (under its maximum: no write)
        for connector_id, step in defaults.items():
            connector = station.connector(connector_id)
            ref = ConnectorRef(station.station_id, connector_id)
            later = [(m, w) for m, w in step if m > now]
            offsets = [0.0] + [(m - now).total_seconds() for m, _ in later]
            powers = [steps.value_at(step, now)] + [w for _, w in later]
            # a raise is held by its schedule (edges.held): no sooner in force than the
            # settle time after it is sent (the round sends it once the decreases it relies
            # on are acknowledged and does not wait itself)
            failsafe = self.power_schedule(ref, now, offsets, powers,
                                           phases=connector.phases, phases_known=False,
                                           installed=self._default_steps(control, ref,
                                                                         connector.phases))
            # (a default not known accepted counts at the connector's maximum: kept so)
            known = connector_id in control.default_layer
            try:
                answer, installed = await control.port.install_failsafe(connector_id, failsafe)
            except StationOffline as exc:
                in_flight = getattr(exc, "in_flight", None)
                if raising and known and in_flight is not None:
                    control.default_layer[connector_id] = in_flight
                raise
            if answer is Answer.ACCEPTED or (answer is Answer.NO_ANSWER and raising and known
                                             and installed is not None):
                control.default_layer[connector_id] = installed
            if answer is Answer.ACCEPTED:
                # its settle time from when the station took it, not from its schedule's
                # start: a station that took it late drew its old default meanwhile
                # (tests/test_settle_from_acceptance.py)
                self.changed_at[ref] = self.clock.now()
            if answer is Answer.NO_ANSWER:
                unanswered.add(connector_id)
            else:
                if answer is not Answer.ACCEPTED and refused is not None:
                    refused.add(connector_id)
                # refused: unbounded when idle. Unanswered tells nothing (it may be taken; in a
                # boot storm timeouts are common, and each change moves every other station's
                # default): as it was
                self._note_bounded(ref, answer is Answer.ACCEPTED)
            if answer is Answer.ACCEPTED and (not control.caps.idle_layer
                                              or ref in self._kept_defaults):
                self._note_kept_default(ref, max(powers))
            # what it was sent, accepted or not (what it accepted is `default_layer`): a
            # refusal is not retried until the defaults change, as with every request
            control.default_sent[connector_id] = [(now, powers[0])] + later
        if key is not None:
            control.defaults_key = key
        # what it holds as far as we know now; lowered in a round, queued (not waited for:
        # held_defaults.py). A set-up waits for it as before: quicker, its GetCompositeSchedule
        # (ask_installed) went out before the station's transactions were known after a
        # restart and their new plans went ungated (tests/test_restart_dr_first_round.py,
        # 3 of 12 copies under load; s28-dr). A set-up with nothing to ask queues it: a boot
        # storm's set-ups each waited for a commit in their sending slot (s29-boot,
        # tests/test_setup_record_queued.py)
        await self._record_held(control, queue_lower=in_round or queue_record)
        return unanswered

    def _note_bounded(self, ref: ConnectorRef, bounded: bool) -> None:
        """Whether a default of ours bounds this connector when idle (not: its maximum is
        kept free above its station, `unbounded.py`); the controller is told (plans) and the
        defaults' key moves (the other stations' defaults)."""
        if bounded == (ref not in self._unbounded):
            return
        (self._unbounded.discard if bounded else self._unbounded.add)(ref)
        self._unbounded_version += 1
        self.publish(learned.ConnectorUnbounded(ref, not bounded))

    def _note_kept_default(self, ref: ConnectorRef, kept_w: float | None) -> None:
        """An idle connector keeps its accepted default (`kept_w`, W) under a car that arrives
        - its station has no idle layer (idle.py sends it no idle schedule) or refused its
        idle schedule (no slot left) - or no longer (None): the controller keeps it free in
        the plan. Before, the plan gave that room to the other cars: 37 kW installed under a
        30 kW grid (tests/test_single_stack_level_idle.py, test_single_profile_slot.py)."""
        kept = self._kept_defaults
        if kept.get(ref) == kept_w:
            return
        if kept_w is None:
            kept.pop(ref, None)
        else:
            kept[ref] = kept_w
        self.publish(learned.IdleDefaultKept(ref, kept_w))

    # --- what an offline station holds -----------------------------------------------------
    def hold_offline(self, station_id: str) -> None:
        """Its connection dropped (or its set-up's defaults went unanswered: it may not have
        taken them): it keeps the fail-safe defaults it accepted (or its maximum
        where none is known accepted) whatever we decide until it is set up again, so the other
        stations' defaults are shared in what they leave. Sized as if it had taken a new share,
        a cap lowered while it was away left the site over the cap once we were gone too
        (CP1 offline on 11 kW, CP2's default 8 kW under a 16 kW cap:
        tests/test_failsafe_offline_default.py). A station not set up by this process is held
        at what the store says it may hold from our start on (held_defaults.restore_held)."""
        control = self.stations.get(station_id)
        if control is None or control.port is None or not (control.default_layer
                                                            or control.default_sent):
            return
        # what it accepted (its maximum where unknown) and what it was last sent: the larger
        # (held_defaults.py, which keeps the same in the store for a restart of ours)
        self._release_pending.discard(station_id)
        self._held_offline[station_id] = self._held_kept(control)
        self._held_version += 1
        self.holds_added += 1
        self.publish(learned.HeldIdle(station_id, self._held_idle(control), self.holds_added))

    def _held_idle(self, control: StationControl) -> tuple:
        """((ref, W steps), ...): what each connector of a held station may let a car arriving
        draw - its idle share while in force, then its default (its maximum where not known
        accepted), and never less than the default it was last sent."""
        out = []
        held = dict(self._held_offline.get(control.station_id, ()))
        for connector in self.topology.station(control.station_id).connectors:
            ref = ConnectorRef(control.station_id, connector.connector_id)
            below = self.installed.below_steps(control, ref, connector.phases, 1.0, False)
            out.append((ref, held_defaults.envelope((below, *held.get(ref, ())),
                                                    self.clock.now())))
        return tuple(out)

    def held_stations(self) -> set[str]:
        """The stations held at what they may hold (offline, or connected with a default
        unanswered) and not yet let go: what they hold is not known to be under the limits."""
        return set(self._held_offline) - self._release_pending

    def refusing_stations(self) -> set[str]:
        """The stations that refused the last fail-safe default sent to a connector of theirs
        (`unbounded.py`): they keep what they held, not known to be under the limits."""
        return {ref.station_id for ref in self._unbounded}

    def release_offline(self, station_id: str) -> None:
        """Set up again: its new defaults are accepted (or counted at its maximum where not),
        it takes its share like the others - once the set-ups queued with it are done
        (held_defaults._flush_releases)."""
        if station_id in self._held_offline:
            self._release_pending.add(station_id)

    def _held_key(self, schedule: list) -> tuple:
        """Per entry of the limits' schedule, the offline stations' held defaults over it
        ((ref, W) pairs: the most each holds from the entry's moment to the next's)."""
        if not self._held_offline:
            return ((),) * len(schedule)
        ends = [m for m, _ in schedule[1:]] + [LAST_MOMENT]
        return tuple(
            tuple((ref, max(_most_between(step, moment, until) for step in kept))
                  for held in self._held_offline.values() for ref, kept in held)
            for (moment, _), until in zip(schedule, ends))

    def _default_shares(self, node_w: tuple, node_a: tuple | None = None,
                        held: tuple = ()) -> dict:
        """The shares for one set of node limits, kept for every set of the current schedule:
        with a DR event announced the schedule has two or more, and a one-entry cache made
        every station of a round compute the whole site's shares again - O(stations x
        connectors), 34 % of the server's time and ~14 s of a DR event at 1 000 connectors
        (issue 10)."""
        key = (node_w, node_a, held)
        shares = self._shares.get(key)
        if shares is None:
            if len(self._shares) >= SHARES_KEPT:
                self._shares.clear()
            shares = self._shares[key] = self.topology.default_shares(
                node_limit_w=node_w, node_limit_a=node_a, held_w=dict(held))
        return shares


def _most_between(step: Step, since, until) -> float:
    """The most a W step allows from `since` to `until`."""
    return max([steps.value_at(step, since)] + [w for m, w in step if since < m < until])


def _room_for_station_max(control: StationControl, n_connectors: int) -> bool:
    """Whether the station holds more profiles than one fail-safe default per connector
    (1.6 `MaxChargingProfilesInstalled`, 2.0.1 `Entries`; unknown: yes)."""
    caps = control.caps
    slots = None if caps is None else caps.max_profiles_installed
    return slots is None or slots > n_connectors
