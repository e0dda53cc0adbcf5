"""Which demand-response events hold where events of one OpenADR program overlap (pure).

The specifications (2.0b eventDescriptor `priority`: the lower the number the higher the
priority, 0 "no priority" = the lowest; 3 event `priority`: a lower number is a higher
priority, none the lowest - both parsed into `DemandResponseEvent.priority`, 0 the highest)
have the higher-priority event replace a lower-priority one for the overlap, even where it
allows more. Their priorities compare within one program only (one VTN's program; here: the
events "openadr:<program>/..." on one circuit): across programs, and for the site's own
events and caps, there is no priority and the most restrictive limit holds (site/limits.py).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smartcharge.site.limits import DemandResponseEvent

OPENADR_PREFIX = "openadr:"    # the DR events an OpenADR VEN stores (smartcharge/openadr/)


def priority_group(event: DemandResponseEvent) -> tuple[str, str | None] | None:
    """Events whose priorities compare: one OpenADR program's on one circuit ("openadr:
    <program>/<event>", a name the REST API may not take). None: a REST event, which
    priority never lifts."""
    if not event.event_id.startswith(OPENADR_PREFIX) or "/" not in event.event_id:
        return None
    return event.event_id.split("/", 1)[0], event.circuit_id


def resolve_priority(events: list[DemandResponseEvent]) -> list[DemandResponseEvent]:
    """Within each priority group, at every moment only the events of the highest priority
    (lowest number) present hold - equal ones together, so the lowest of them binds; the
    others are cut out of that stretch. Events of no group pass as they are."""
    groups: dict[tuple, list[DemandResponseEvent]] = {}
    out = []
    for event in events:
        group = priority_group(event)
        if group is None:
            out.append(event)
        else:
            groups.setdefault(group, []).append(event)
    for members in groups.values():
        edges = sorted({m for e in members for m in (e.start, e.end)})
        pieces: dict[str, list[list]] = {}
        for start, end in zip(edges, edges[1:]):
            covering = [e for e in members if e.start < end and e.end > start]
            if not covering:
                continue
            best = min(e.priority for e in covering)
            for event in covering:
                if event.priority != best:
                    continue
                spans = pieces.setdefault(event.event_id, [])
                if spans and spans[-1][1] == start:
                    spans[-1][1] = end
                else:
                    spans.append([start, end])
        by_id = {e.event_id: e for e in members}
        out.extend(event if (event.start, event.end) == (start, end)
                   else replace(event, start=start, end=end)
                   for event_id, spans in pieces.items() for start, end in spans
                   for event in (by_id[event_id],))
    return out
