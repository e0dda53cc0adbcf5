import asyncio, sys, time, signal, tempfile, os
from pathlib import Path
sys.path.insert(0, "/work/wt-kills/tests")
from test_site_restart import Rig, listening, installed_since
from test_crash import kill
from tests.site_e2e import wait_until
from tests.installed_limits import forecast_excesses
from smartcharge.site.limits import SiteLimits
from smartcharge.config import load_site
from smartcharge.sim.ev import SimEV

N=10; GRID=150000
async def main():
    tmp = Path(tempfile.mkdtemp())
    rig = Rig(tmp, stations=N, connectors=2)
    rig.site_file.write_text(rig.site_file.read_text().replace(f"limit_w = {N*2*22080}", f"limit_w = {GRID}"))
    rig.site = load_site(rig.site_file)
    rig.start_server()
    await rig.fleet.start(wait_booted_s=60)
    for i in range(1, 5):
        assert await rig.fleet.plug_in(f"CP{i}", 1, SimEV(capacity_wh=80_000, soc=0.2), "DRIVER-1")
    st = rig.fleet.station("CP4")
    await wait_until(lambda: any(p.purpose == "TxProfile" for p in st.profiles.profiles), 30, "tx")
    log = rig.log
    for life in range(2):
        boots = log.read_bytes().count(b"BootNotification")
        kill(rig.server)
        rig.start_server()
        await wait_until(lambda: log.read_bytes().count(b"BootNotification") >= boots + 3, 60, "3 boots")
    kill(rig.server)
    restarted = rig.clock.now()
    rig.start_server()
    await wait_until(lambda: all(installed_since(s, restarted) for s in rig.fleet.stations.values()), 60, "all set up")
    for moment in range(3):
        limits = SiteLimits(rig.site)
        ex = forecast_excesses(rig.site, rig.fleet, limits, rig.clock.now(), hours=3, step_s=60)
        print("excess while up", len(ex), ex[:3])
        await asyncio.sleep(3)
    kill(rig.server)
    ex = forecast_excesses(rig.site, rig.fleet, SiteLimits(rig.site), rig.clock.now(), hours=3, step_s=60)
    print("excess gone", len(ex), ex[:5])
    import sqlite3
    db = sqlite3.connect(tmp/"site.sqlite")
    print(db.execute("select station_id, count(*), state from sessions group by station_id, state").fetchall())
    await rig.fleet.stop()
asyncio.run(main())
