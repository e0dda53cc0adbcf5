import time
from benchmarks.control_latency import site_toml
from smartcharge.config import parse_site
from smartcharge.site.topology import SiteTopology
for n in (1000, 10000):
    site = parse_site(site_toml(n, 9, "x.sqlite"))
    topo = SiteTopology(site)
    lw = topo.static_limit_w.copy(); lw[0] = lw[0] / 2
    best = 1e9
    for _ in range(3):
        t = time.thread_time(); s = topo.default_shares(node_limit_w=lw); best = min(best, time.thread_time() - t)
    print(n, f"{best*1e3:.1f} ms", list(s.items())[:1])
