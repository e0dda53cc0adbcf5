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

N = int(sys.argv[1]); SIG = getattr(signal, sys.argv[2]); AT = int(sys.argv[3]); GRID = int(sys.argv[4])

async def main():
    tmp = Path(tempfile.mkdtemp())
    rig = Rig(tmp, stations=N, connectors=2)
    text = rig.site_file.read_text()
    rig.site_file.write_text(text.replace(f"limit_w = {N*2*22080}", f"limit_w = {GRID}"))
    rig.site = load_site(rig.site_file)
    rig.start_server()
    await listening(rig.http_url, 60)
    start = asyncio.create_task(rig.fleet.start(wait_booted_s=None))
    log = rig.log
    await wait_until(lambda: log.read_bytes().count(b"BootNotification") >= N, 60, "boots")
    await wait_until(lambda: sum(1 for s in rig.fleet.stations.values() if s.profiles.profiles) >= N, 60, "all set up")
    for i in range(1, 6):
        await rig.fleet.plug_in(f"CP{i}", 1, SimEV(capacity_wh=80_000, soc=0.2), "DRIVER-1")
    await asyncio.sleep(5)
    rig.server.send_signal(signal.SIGKILL); rig.server.wait()
    rig.start_server()
    await wait_until(lambda: log.read_bytes().count(b"BootNotification") >= N + AT, 60, "boots 2")
    rig.server.send_signal(SIG)
    rc = await asyncio.get_running_loop().run_in_executor(None, rig.server.wait, 60)
    print("rc", rc)
    restarted = rig.clock.now()
    rig.start_server()
    await listening(rig.http_url, 60)
    await wait_until(lambda: len([s for s in rig.fleet.stations.values() if installed_since(s, restarted)]) >= N, 120, "all set up again")
    await asyncio.sleep(3)
    kill(rig.server)
    limits = SiteLimits(rig.site)
    ex = forecast_excesses(rig.site, rig.fleet, limits, rig.clock.now(), hours=3, step_s=60)
    print("excesses", len(ex), ex[:10])
    t = log.read_text()
    print([l for l in t.splitlines() if "ERROR" in l][:10])
    await rig.fleet.stop()
    print(tmp)

asyncio.run(main())
