import json, sqlite3, time, tempfile, os
from datetime import datetime, UTC
from smartcharge.store_tx import db_time
payload = {"connectorId": 1, "csChargingProfiles": {"chargingProfileId": 1001, "stackLevel": 0,
  "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Absolute",
  "chargingSchedule": {"duration": 86400, "startSchedule": "2026-12-06T16:00:00Z", "chargingRateUnit": "A",
  "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0, "numberPhases": 3}, {"startPeriod": 7200, "limit": 32.0, "numberPhases": 3}]}}}
d = tempfile.mkdtemp(); db = sqlite3.connect(os.path.join(d, "x.db"), isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("CREATE TABLE profiles_sent (id INTEGER PRIMARY KEY, station_id, connector_id, purpose, profile_json, answer, sent_at)")
now = datetime.now(UTC)
rows = [("LAT%05d" % i, 1, "TxDefaultProfile", payload, "Accepted", now) for i in range(1400)]
SQL = "INSERT INTO profiles_sent (station_id, connector_id, purpose, profile_json, answer, sent_at) VALUES (?, ?, ?, ?, ?, ?)"
for rep in range(5):
    t = time.thread_time(); db.execute("BEGIN")
    for r in rows:
        db.execute(SQL, (r[0], r[1], r[2], json.dumps(r[3]), r[4], db_time(r[5])))
    db.execute("COMMIT"); a = time.thread_time() - t
    t = time.thread_time(); texts = [json.dumps(r[3]) for r in rows]; b0 = time.thread_time() - t
    t = time.thread_time(); db.execute("BEGIN")
    db.executemany(SQL, [(r[0], r[1], r[2], s, r[4], db_time(r[5])) for r, s in zip(rows, texts)])
    db.execute("COMMIT"); b = time.thread_time() - t
    print(f"per row: execute each {a/1400*1e6:.1f} us; executemany with json ready {b/1400*1e6:.1f} us; json.dumps alone {b0/1400*1e6:.1f} us")
