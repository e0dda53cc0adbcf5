import asyncio, sys, sqlite3, subprocess, os, time, tempfile
from pathlib import Path
sys.path.insert(0, "/work/wt-kills")
from tests.test_kill_points import Server
async def main():
    for trial in range(3):
        tmp = Path(tempfile.mkdtemp())
        server = Server(tmp, stations=1)
        server.start(); await server.wait_listening(); server.process.kill(); server.process.wait()
        db = sqlite3.connect(server.db_path)
        db.executemany("INSERT INTO inbound_messages (station_id, action, message_key, payload_json, answer_json, received_at) VALUES ('CP1','MeterValues',?, ?, '{}', '2020-01-01T00:00:00.000000+00:00')", ((f"k{i}", "x"*200) for i in range(400_000)))
        db.execute("INSERT INTO inbound_messages (station_id, action, message_key, payload_json, answer_json, received_at) VALUES ('CP1','MeterValues','new','{}','{}','2099-01-01T00:00:00.000000+00:00')")
        db.commit(); db.close()
        server.start()
        # killed as it starts listening (the prune runs from the store's opening on)
        log = tmp/"server.log"
        while b"(schema version" not in log.read_bytes().split(b"GET /api/openapi.json")[-1]:
            await asyncio.sleep(0.002)
        server.process.kill(); server.process.wait()
        db = sqlite3.connect(server.db_path)
        print(trial, db.execute("select count(*) from inbound_messages").fetchone(), db.execute("PRAGMA integrity_check").fetchone(), "pruned logged:", b"retention: pruned" in (tmp/"server.log").read_bytes())
        server.stop()
asyncio.run(main())
