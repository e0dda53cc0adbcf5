import asyncio, sys, time, signal, tempfile, os
from pathlib import Path
sys.path.insert(0, "/work/wt-kills/tests")
from test_site_restart import Rig, listening
from tests.site_e2e import wait_until

N = int(sys.argv[1]); SIG = getattr(signal, sys.argv[2]); AT = int(sys.argv[3])

async def main():
    tmp = Path(tempfile.mkdtemp())
    rig = Rig(tmp, stations=N, connectors=2)
    rig.start_server()
    await listening(rig.http_url, 60)
    start = asyncio.create_task(rig.fleet.start(wait_booted_s=None))
    log = rig.log
    await wait_until(lambda: log.read_bytes().count(b"BootNotification") >= AT, 60, "boots")
    t0 = time.monotonic()
    rig.server.send_signal(SIG)
    rc = await asyncio.get_running_loop().run_in_executor(None, rig.server.wait, 60)
    print("rc", rc, "exit after", round(time.monotonic() - t0, 2), "s")
    text = log.read_text()
    after = text[text.find("shutting down"):]
    bad = [l for l in after.splitlines() if "ERROR" in l or "Traceback" in l or "WARNING" in l]
    print("\n".join(bad[:30]))
    import sqlite3
    db = sqlite3.connect(tmp / "site.sqlite")
    print("held rows", db.execute("select count(*) from failsafe_held").fetchone())
    print("boots", text.count("BootNotification"))
    await rig.fleet.stop()
    print(tmp)

asyncio.run(main())
