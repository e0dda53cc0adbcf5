"""Where an OpenADR event lands: the site's own demand-response events, written through the
same obligation writer as the REST API (store first, then memory; site/obligations.py), so
they survive a restart, bind the planner and the stations' fail-safe defaults, and the
dashboard names them ("openadr:<program>/<event>"). Prices go to the controller's price list.

An event is reconciled as a whole: the DR events it should be now are written, the ones it no
longer has (a modification dropped an interval, a cancellation) are cancelled - in one commit.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from smartcharge import store_obligations as ob
from smartcharge.model import OpenAdrProgram, Site
from smartcharge.openadr.signals import (AdrEvent, Mapping, map_event, owns, random_offset_s,
                                         simple_levels_w, source_id)
from smartcharge.site.limits import DemandResponseEvent
from smartcharge.site.obligations import ObligationWriter, event_row
from smartcharge.site.prices import Price

log = logging.getLogger(__name__)


class OpenAdrSink:
    def __init__(self, controller, writer: ObligationWriter,
                 told: Callable[[], Awaitable] | None = None) -> None:
        self.controller = controller
        self.writer = writer
        # waits (bounded) until the stations hold the limits as they are now
        # (`site/applied.py`)
        self.told = told

    # --- what a program's signals are measured against ------------------------------------
    def circuit(self, program: OpenAdrProgram, event: AdrEvent) -> str:
        """Where the event's limits go: the one circuit of the site its targets name (2.0b
        resource_id, 3 RESOURCE_NAME), else the program's circuit."""
        named = {r for r in event.resources if r in self.controller.topology.node_ids
                 and not r.startswith("station:")}
        if len(named) == 1:
            return named.pop()
        if len(named) > 1:
            log.warning("openadr %s/%s names circuits %s: applied to the program's circuit %s",
                        program.program, event.event_id, sorted(named), program.circuit)
        return program.circuit

    def cap_w(self, program: OpenAdrProgram, circuit: str | None = None) -> float:
        """The cap of the circuit (the program's by default) in the site file; without one,
        what the connectors under it can draw at most (SIMPLE levels and capacity percentages
        are shares of it)."""
        topology = self.controller.topology
        node = topology.node_ids.index(circuit or program.circuit)
        limit_w = float(topology.static_limit_w[node])
        if limit_w != float("inf"):
            return limit_w
        return sum(topology.max_power_w(ref) for i, ref in enumerate(topology.refs)
                   if node in topology.ancestors(int(topology.connector_node[i])))

    def shift_s(self, program: OpenAdrProgram, event: AdrEvent) -> float:
        """How far a randomised start moves this event [s] (0 without randomize_start)."""
        if not program.randomize_start:
            return 0.0
        return random_offset_s(event, program.ven_name, event.randomize_s)

    def first_start(self, program: OpenAdrProgram, event_id: str):
        """Where the stored limits of an OpenADR event begin (its first piece), or None."""
        stored = self.controller.limits.event(source_id(program.program, event_id))
        return None if stored is None else stored.start

    def mapping(self, program: OpenAdrProgram, event: AdrEvent) -> Mapping:
        cap_w = self.cap_w(program, self.circuit(program, event))
        return map_event(event, cap_w=cap_w,
                         levels_w=simple_levels_w(program.simple_levels_w,
                                                  program.simple_levels, cap_w),
                         ven=program.ven_name, opt_in=program.opt_in,
                         randomize=program.randomize_start)

    # --- writes -----------------------------------------------------------------------------
    async def apply(self, program: OpenAdrProgram, event: AdrEvent, *,
                    until_told: bool = False) -> Mapping:
        """Store and apply what the event asks now (nothing, if cancelled or opted out).
        Raises StoreUnavailable when the store cannot take it: nothing changed then.
        `until_told`: return once the stations hold what changed (bounded, `told`) - for
        OpenADR 2.0b's opt-in, the site's word to the utility like the REST API's 201
        (answered at once and killed before the round, the stations kept their old profiles
        until the restart); not for an OpenADR 3 notification, whose answer promises
        nothing and whose order must hold."""
        mapping = self.mapping(program, event)
        for note in mapping.notes:
            log.info("openadr %s/%s: %s", program.program, event.event_id, note)
        prefix = source_id(program.program, event.event_id)
        circuit = self.circuit(program, event)
        circuit = None if circuit == self.controller.topology.node_ids[0] else circuit
        written = await self._reconcile(
            prefix, [replace(e, circuit_id=circuit) for e in mapping.limits])
        self.controller.prices.set_source(prefix, [
            Price(p.start, p.end, p.price_per_kwh, prefix, event.priority)
            for p in mapping.prices])
        self.controller.request_replan(f"openadr:{program.program}/{event.event_id}")
        if until_told and written and self.told is not None:
            await self.told()    # (a re-sent event that changes nothing does not wait)
        return mapping

    async def lift(self, program: OpenAdrProgram, event_id: str) -> None:
        """The VTN cancelled or withdrew the event: its limits and prices no longer hold."""
        prefix = source_id(program.program, event_id)
        await self._reconcile(prefix, [])
        self.controller.prices.set_source(prefix, [])
        self.controller.request_replan(f"openadr-cancel:{program.program}/{event_id}")

    def events_in_force(self, program: OpenAdrProgram, now=None) -> set[str]:
        """The OpenADR event ids of this program with a DR event not cancelled (and, given
        `now`, not ended: an event that was honoured to its end stays on record as such)."""
        head = source_id(program.program, "")
        return {e.event_id[len(head):].split("#")[0] for e in self.controller.limits.events()
                if e.event_id.startswith(head) and not e.cancelled
                and (now is None or e.end > now)}

    async def _reconcile(self, prefix: str, wanted: list[DemandResponseEvent]) -> bool:
        """Store what the event's limits are now; whether anything changed."""
        limits = self.controller.limits
        now = self.controller.clock.now()
        writes: list[DemandResponseEvent] = []

        def check() -> None:   # under the writer's lock: what memory holds now
            writes.clear()
            existing = {e.event_id: e for e in limits.events() if owns(prefix, e.event_id)}
            if existing and wanted and all(e.cancelled for e in existing.values()):
                # cancelled (by the VTN, which never revives an event, or by an operator's
                # DELETE): a re-send - after a restart, say - does not bring it back
                log.info("openadr: %s was cancelled here; it stays cancelled", prefix)
                return
            desired = {e.event_id: e for e in wanted}
            writes.extend(e for key, e in desired.items() if existing.get(key) != e)
            writes.extend(replace(e, cancelled=True) for key, e in existing.items()
                          if key not in desired and not e.cancelled)

        def work(tx) -> None:
            for event in writes:
                ob.save_event(tx, event_row(event), at=now)

        def apply(_) -> None:
            for event in writes:
                if limits.event(event.event_id) is None:
                    limits.add_event(event)
                else:
                    limits.update_event(event)
            if writes:
                log.info("openadr: %s -> %s", prefix, ", ".join(
                    f"{e.event_id} {'cancelled' if e.cancelled else f'{e.limit_w:.0f} W'}"
                    for e in writes))

        await self.writer.commit(check, work, apply)
        return bool(writes)


def programs_of(site: Site, version: str) -> list[OpenAdrProgram]:
    return [p for p in site.openadr if p.version == version]
