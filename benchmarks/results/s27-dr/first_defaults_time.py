import asyncio, time
from datetime import timedelta
from benchmarks.dr_round_cpu import site_text, T0
from smartcharge.clock import ManualClock
from smartcharge.config import parse_site
from smartcharge.ocpp.ports import port_factory
from smartcharge.ocpp.registry import StationRegistry
from smartcharge.site.controller import SiteController
from smartcharge.site.dispatch import Dispatcher, SiteReads
from smartcharge.site.limits import DemandResponseEvent

async def main(n):
    site = parse_site(site_text(n))
    clock = ManualClock(T0)
    c = SiteController(site, clock)
    reads = SiteReads(c.topology, c.site, c.state, c.limits, c.uncontrollable, c.phase_use)
    d = Dispatcher(reads, StationRegistry(), None, clock, ports=port_factory(clock), publish=lambda e: None)
    controls = list(d.stations.values())
    d._defaults_key(); [d._wanted_defaults(x) for x in controls]
    limit_w = float(c.topology.static_limit_w[0])
    c.limits.add_event(DemandResponseEvent("e", clock.now(), clock.now() + timedelta(hours=2), limit_w=limit_w / 2))
    t = time.thread_time(); d._defaults_key(); t1 = time.thread_time() - t
    t = time.thread_time(); d._wanted_defaults(controls[0]); t2 = time.thread_time() - t
    t = time.thread_time(); [d._wanted_defaults(x) for x in controls[1:]]; t3 = time.thread_time() - t
    print(n, f"key {t1*1e3:.1f} ms, first station's defaults (the shares) {t2*1e3:.1f} ms, the other {len(controls)-1} stations {t3*1e3:.1f} ms")
for n in (1000, 10000):
    asyncio.run(main(n))
