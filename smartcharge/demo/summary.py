"""The end of a demo run: the summary a person reads, and the plot of the day."""

from __future__ import annotations

from typing import TYPE_CHECKING

from collections import Counter

from smartcharge.demo.billing import BillingCheck
from smartcharge.demo.measure import SAMPLE_EVERY_S
from smartcharge.demo.plot import plot_day
from smartcharge.demo.report import kw
from smartcharge.demo.scenario import StationProtocol

if TYPE_CHECKING:
    from smartcharge.demo.run import Demo


def protocol_line(protocols: dict[str, StationProtocol]) -> str:
    """e.g. "10 stations on 1.6, 10 on 2.0.1 (5 with ISO 15118 cars): CP001 1.6, CP002 2.0.1 …"."""
    versions = Counter(p.ocpp_version for p in protocols.values())
    iso = sum(1 for p in protocols.values() if p.iso15118)
    counts = ", ".join(f"{n} on {v}" for v, n in sorted(versions.items()))
    listing = ", ".join(f"{sid} {p.label}" for sid, p in sorted(protocols.items()))
    return f"{counts}" + (f" ({iso} with ISO 15118 cars)" if iso else "") + f" — {listing}"


def summarise(demo: Demo, stats: dict, bills: BillingCheck | None, real_s: float) -> int:
    monitor = demo.monitor
    arrived = demo.counters.visits
    requested_wh = sum(v.requested_wh for v in arrived)
    delivered_wh = sum(v.ev.charged_wh for v in arrived)
    left = [v for v in arrived if v.departure < demo.end]
    served = sum(1 for v in left if v.ev.charged_wh >= v.requested_wh - 100)
    peak = monitor.peak()
    dr_peak = None
    if demo.dr is not None and demo.dr_answer.startswith("accepted"):
        during = [s for s in monitor.samples if demo.dr.start <= s.time < demo.dr.end]
        dr_peak = max(during, key=lambda s: s.site_load_w, default=None)
    out_dir = demo.args.out
    plot_path = out_dir / "site-load.png"
    violations = monitor.violations
    notes = [f"delivered {delivered_wh / 1000:.0f} of {requested_wh / 1000:.0f} kWh requested",
             f"peak {kw(peak.site_load_w if peak else None)}",
             f"limit violations {len(violations)}"]
    dr_windows = []
    if dr_peak is not None or (demo.dr and demo.dr_answer.startswith("accepted")):
        dr_windows.append((demo.dr.start, demo.dr.end, f"DR {demo.dr.event_id}"))
    plot_day(monitor.samples, plot_path, title=f"{demo.site.name}: site load vs effective limit",
             site_cap_w=demo.site.root.limit_w, dr_windows=dr_windows, notes=notes)

    print()
    print(f"Summary — {demo.args.hours:g} h of site time in {real_s:.0f} s")
    print(f"  cars:               {demo.counters.arrived} arrived, {demo.counters.departed} left, "
          f"{served} of {len(left)} who left got everything they asked for"
          + (f", {demo.counters.refused} refused" if demo.counters.refused else ""))
    print(f"  drivers' needs:     {demo.counters.needs_told} told through the API "
          f"(PUT /api/sessions/{{id}}); the others got the site's defaults")
    told_by_cars = sum(1 for sim in demo.fleet.stations.values()
                       for action, _, _ in sim.acknowledged if action == "NotifyEVChargingNeeds")
    print(f"                      {told_by_cars} told by ISO 15118 cars through their 2.0.1 "
          f"station (NotifyEVChargingNeeds), no API call")
    versions = Counter(p.ocpp_version for p in demo.protocols.values())
    print("  stations:           " + ", ".join(
        f"{n} speak OCPP {v}" for v, n in sorted(versions.items())) + " (under the same "
        "breakers)")
    share = delivered_wh / requested_wh if requested_wh else 1.0
    print(f"  energy:             {delivered_wh / 1000:.1f} kWh delivered of "
          f"{requested_wh / 1000:.1f} kWh requested ({share:.0%})")
    if peak is not None:
        print(f"  peak site load:     {kw(peak.site_load_w)} at {peak.time:%H:%M} "
              f"(grid cap {kw(demo.site.root.limit_w)})")
    if demo.dr is not None:
        line = f"  demand response:    {demo.dr.event_id} {demo.dr.start:%H:%M}–{demo.dr.end:%H:%M} " \
               f"limit {kw(demo.dr.limit_w)}: {demo.dr_answer or 'not reached in this run'}"
        if dr_peak is not None:
            line += f"; peak during it {kw(dr_peak.site_load_w)}"
        if demo.vtn is not None:
            line += f"; {len(demo.vtn.load_reports_kw)} load reports at the VTN"
        print(line)
    print(f"  limit violations:   {len(violations)} (measured draws checked every "
          f"{SAMPLE_EVERY_S:g} s of site time against the grid limit and every breaker; "
          f"{len(monitor.samples)} checks)")
    for v in violations[:10]:
        print(f"      {v.time:%H:%M:%S} {v.where} {v.kind}: {v.value:.1f} > {v.limit:.1f}")
    if bills is None:
        print("  billing:            could not read the sessions back (GET /api/sessions)")
    else:
        per_version = ", ".join(f"{bills.exact[v]} of {n} on {v}"
                                for v, n in sorted(bills.closed.items())) or "no session closed"
        print(f"  billing:            {'exact' if bills.ok else 'NOT EXACT'} — closed sessions "
              f"billed as their register difference: {per_version}")
        for line in bills.wrong[:10]:
            print(f"      {line}")
    print(f"  profiles sent:      {stats.get('profiles_sent', 'unknown')}"
          f" ({stats.get('replans', '?')} re-plans)")
    print(f"  plot:               {plot_path.resolve()}")
    return 0 if not violations and (bills is None or bills.ok) else 1
