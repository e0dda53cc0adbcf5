import asyncio, sys, time, signal, tempfile, os
from pathlib import Path
from datetime import timedelta
sys.path.insert(0, "/work/wt-kills/tests")
from test_site_restart import Rig, listening, installed_since
from test_crash import kill
from tests.site_e2e import wait_until
from tests.installed_limits import forecast_excesses, node_loads
from smartcharge.site.limits import SiteLimits
from smartcharge.config import load_site
from smartcharge.sim.ev import SimEV

GRID = int(sys.argv[1])
async def main():
    tmp = Path(tempfile.mkdtemp())
    rig = Rig(tmp, stations=3, connectors=1)
    text = rig.site_file.read_text()
    rig.site_file.write_text(text.replace(f"limit_w = {3*22080}", f"limit_w = {GRID}"))
    rig.site = load_site(rig.site_file)
    rig.start_server()
    await rig.fleet.start(wait_booted_s=30)
    cp1, cp2 = rig.fleet.station("CP1"), rig.fleet.station("CP2")
    assert await rig.fleet.plug_in("CP1", 1, SimEV(capacity_wh=80_000, soc=0.2), "DRIVER-1")
    await wait_until(lambda: any(p.purpose == "TxProfile" for p in cp1.profiles.profiles), 30, "tx")
    await asyncio.sleep(6)
    limits = SiteLimits(rig.site)
    def show(tag):
        for s in rig.fleet.stations.values():
            print(tag, s.spec.station_id, [(p.purpose, p.stack_level, p.schedule.periods[0].limit, p.schedule.duration_s) for p in s.profiles.profiles])
        print(tag, node_loads(rig.site, rig.fleet, limits, rig.clock.now()))
    show("before")
    print("excess before", forecast_excesses(rig.site, rig.fleet, limits, rig.clock.now(), hours=1, step_s=30)[:5])
    await cp2.go_offline()
    await asyncio.sleep(3)
    show("cp2 off")
    print("excess cp2 off", forecast_excesses(rig.site, rig.fleet, limits, rig.clock.now(), hours=1, step_s=30)[:5])
    restarted = await rig.restart(signal.SIGKILL)
    await wait_until(lambda: installed_since(cp1, restarted) and installed_since(rig.fleet.station("CP3"), restarted), 30, "set up")
    await asyncio.sleep(10)
    kill(rig.server)
    show("after")
    print("excess after", forecast_excesses(rig.site, rig.fleet, limits, rig.clock.now(), hours=1, step_s=30)[:5])
    await rig.fleet.stop()

asyncio.run(main())
