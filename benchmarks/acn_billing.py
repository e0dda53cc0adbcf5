"""Caltech ACN sessions replayed through real OCPP stations against `smartcharge serve`, SIGKILLed
on the way: is every session billed exactly what its meter said, once?

    python -m benchmarks.acn_billing [--days 2019-10-28 2019-10-29] [--kills 0.4] [--seed 1]

One station per ACN EVSE (half speak 1.6, half 2.0.1), one connector each. Each session is sent
as its station would have queued it (timestamps of the data moved to end two minutes ago):
a start with the station's register, a sample every 15 minutes (the car at 6.656 kW until it has
its ACN energy; registers in Wh or kWh, stamps with or without milliseconds), a stop at the
register plus the energy delivered. `serve` is SIGKILLed when that fraction of the messages is
acknowledged (each of `--kills`) and started again on the same database; a station re-sends
what was not answered, after a BootNotification half the time. Every frame the server sends is
checked against the official schemas with formats (date-times with a zone). The table: what the
meters said, what the CSV bills, the sessions that differ, the stations with no
SetChargingProfile on their last connection (not set up again). The data: benchmarks/acn.py
(fetched once with pip). Found in session 25: kWh registers billed with a float's noise.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import decimal
import io
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import ocpp
from jsonschema import Draft4Validator, FormatChecker

from benchmarks import acn

SCHEMAS = Path(ocpp.__file__).parent
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
FORMATS = FormatChecker()
FORMATS.checks("date-time")(lambda v: not isinstance(v, str) or bool(RFC3339.match(v)))
# what a station answers to each of our calls (version-neutral enough for both schemas)
ANSWERS = {"SetChargingProfile": {"status": "Accepted"}, "ClearChargingProfile": {"status": "Accepted"},
           "GetCompositeSchedule": {"status": "Rejected"}, "TriggerMessage": {"status": "Rejected"},
           "GetConfiguration": {"configurationKey": []}, "GetChargingProfiles": {"status": "NoProfiles"}}
SAMPLE_S = 900
CAR_W = 6656.0


def schema_errors(version: str, action: str, request: bool, payload: dict) -> list[str]:
    name = action + (("" if request else "Response") if version == "1.6"
                     else ("Request" if request else "Response"))
    path = SCHEMAS / ("v16" if version == "1.6" else "v201") / "schemas" / f"{name}.json"
    schema = json.loads(path.read_text(), parse_float=decimal.Decimal)
    payload = json.loads(json.dumps(payload), parse_float=decimal.Decimal)
    return [f"{action}: {e.message[:120]}"
            for e in Draft4Validator(schema, format_checker=FORMATS).iter_errors(payload)]


def stamp(at: datetime, millis: bool) -> str:
    text = at.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{at.microsecond // 1000:03d}Z" if millis else "Z")


class Serve:
    """`smartcharge serve` on a fixed port and one database, killed and started again."""

    def __init__(self, config: Path, db: Path) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.config, self.db, self.proc = config, db, None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "smartcharge", "serve", "--config", str(self.config),
             "--port", str(self.port), "--db", str(self.db), "--log-level", "WARNING"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert "listening" in self.proc.stdout.readline()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


async def close_all(stations) -> None:
    """Every station's connection closed (the run's end)."""
    for s in stations:
        if s.ws is not None:
            await s.ws.close()


class Station:
    """A station over a raw WebSocket: answers the server's calls, re-sends until answered."""

    def __init__(self, sid: str, version: str, run: Run) -> None:
        self.sid, self.version, self.run = sid, version, run
        self.ws = None
        self.waiting: dict[str, asyncio.Future] = {}
        self.profiles_on_this_connection = 0

    async def _open(self) -> None:
        proto = "ocpp1.6" if self.version == "1.6" else "ocpp2.0.1"
        token = base64.b64encode(f"{self.sid}:{self.run.password(self.sid)}".encode()).decode()
        while True:
            try:
                self.ws = await self.run.http.ws_connect(
                    f"ws://127.0.0.1:{self.run.serve.port}/ocpp/{self.sid}", protocols=(proto,),
                    headers={"Authorization": f"Basic {token}"})
                break
            except (aiohttp.ClientError, OSError):
                await asyncio.sleep(0.3)
        self.profiles_on_this_connection = 0
        self.reader = asyncio.ensure_future(self._read(self.ws))
        if not self.run.booted.get(self.sid) or self.run.rnd.random() < 0.5:
            boot = ({"chargePointVendor": "ACN", "chargePointModel": "EVSE"} if self.version == "1.6"
                    else {"reason": "PowerUp", "chargingStation": {"vendorName": "ACN", "model": "EVSE"}})
            await self._call_once("BootNotification", boot)
            self.run.booted[self.sid] = True

    async def _read(self, ws) -> None:
        async for msg in ws:
            frame = json.loads(msg.data)
            if frame[0] == 2:
                self.run.problems += schema_errors(self.version, frame[2], True, frame[3])
                self.profiles_on_this_connection += frame[2] == "SetChargingProfile"
                answer = ANSWERS.get(frame[2])
                reply = [3, frame[1], answer] if answer is not None else \
                    [4, frame[1], "NotSupported", "", {}]
                await ws.send_str(json.dumps(reply))
            elif frame[1] in self.waiting:
                self.waiting.pop(frame[1]).set_result(frame)

    async def _call_once(self, action: str, payload: dict) -> list:
        mid = uuid.uuid4().hex
        self.waiting[mid] = future = asyncio.get_running_loop().create_future()
        await self.ws.send_str(json.dumps([2, mid, action, payload]))
        done, _ = await asyncio.wait([future, self.reader], timeout=15,
                                     return_when=asyncio.FIRST_COMPLETED)
        if future not in done:
            raise ConnectionError("no answer")
        frame = future.result()
        if frame[0] == 3:
            self.run.problems += schema_errors(self.version, action, False, frame[2])
        else:
            self.run.problems.append(f"{action}: CALLERROR {frame[2]}")
        return frame

    async def call(self, action: str, payload: dict) -> list:
        payload = self._as_sent(action, payload)
        while True:
            try:
                if self.ws is None or self.ws.closed:
                    await self._open()
                frame = await self._call_once(action, payload)
                self.run.acked += 1
                return frame
            except (ConnectionError, aiohttp.ClientError, OSError):
                self.ws = None
                self._connection_lost()
                await asyncio.sleep(0.3)

    def _as_sent(self, action: str, payload: dict) -> dict:
        """The payload as this station sends it (a subclass may mark it)."""
        return payload

    def _connection_lost(self) -> None:
        """Called at every lost connection before the re-send (a subclass may note it)."""


class Run:
    def __init__(self, rows: list[dict], kills: list[float], seed: int, workdir: Path) -> None:
        self.rnd = random.Random(seed)
        self.kills, self.acked, self.problems, self.booted = kills, 0, [], {}
        ids = sorted({r["station_id"] for r in rows})
        self.version = {sid: ("2.0.1" if i % 2 else "1.6") for i, sid in enumerate(ids)}
        last = max(datetime.fromisoformat(r["departure"]) for r in rows)
        shift = datetime.now(UTC) - timedelta(minutes=2) - last
        register = {sid: self.rnd.randint(100_000, 5_000_000) for sid in ids}
        self.sessions: dict[str, list[dict]] = {sid: [] for sid in ids}
        for n, row in enumerate(sorted(rows, key=lambda r: r["arrival"])):
            sid = row["station_id"]
            start = (datetime.fromisoformat(row["arrival"]) + shift).astimezone(UTC)
            stop = (datetime.fromisoformat(row["departure"]) + shift).astimezone(UTC)
            r0 = register[sid]
            r1 = r0 + round(float(row["delivered_energy (kWh)"]) * 1000)
            register[sid] = r1 + self.rnd.randint(0, 50)
            samples = []
            k = 1
            while start + timedelta(seconds=SAMPLE_S * k) < stop:
                samples.append((start + timedelta(seconds=SAMPLE_S * k),
                                min(r1, r0 + round(CAR_W * SAMPLE_S * k / 3600))))
                k += 1
            self.sessions[sid].append({"n": n, "start": start, "stop": stop, "r0": r0, "r1": r1,
                                       "samples": samples})
        self.total = sum(2 + len(s["samples"]) for p in self.sessions.values() for s in p)
        config = workdir / "acn.toml"
        parts = ['[site]\nname = "acn"\n[server]\ncall_timeout_s = 10\n[grid]\nlimit_w = 150000\n']
        for sid in ids:
            parts.append(f'[[stations]]\nid = "{sid}"\npassword = "{self.password(sid)}"\n'
                         'circuit = "grid"\n[[stations.connectors]]\nid = 1\nphases = 1\n'
                         'max_current_a = 32\n')
        parts.append('[auth]\nid_tags = ["ACN-DRIVER"]\n[api]\nadmin_tokens = ["acn-admin"]\n')
        config.write_text("".join(parts))
        self.serve = Serve(config, workdir / "acn.sqlite")

    @staticmethod
    def password(sid: str) -> str:
        return f"pw-{sid}-0123456789"

    def reading(self, wh: int, version: str) -> dict:
        kwh = self.rnd.random() < 0.5
        if version == "1.6":
            return {"value": f"{wh / 1000:.3f}" if kwh else str(wh), "unit": "kWh" if kwh else "Wh",
                    "measurand": "Energy.Active.Import.Register"}
        return {"value": round(wh / 1000, 3) if kwh else wh,
                "measurand": "Energy.Active.Import.Register",
                "unitOfMeasure": {"unit": "kWh" if kwh else "Wh"}}

    async def station(self, station: Station) -> None:
        v = station.version
        for s in self.sessions[station.sid]:
            ms = self.rnd.random() < 0.5
            if v == "1.6":
                answer = await station.call("StartTransaction", {
                    "connectorId": 1, "idTag": "ACN-DRIVER", "meterStart": s["r0"],
                    "timestamp": stamp(s["start"], ms)})
                tx = answer[2]["transactionId"]
                for at, wh in s["samples"]:
                    await station.call("MeterValues", {"connectorId": 1, "transactionId": tx,
                                                       "meterValue": [{"timestamp": stamp(at, ms),
                                                                       "sampledValue": [self.reading(wh, v)]}]})
                await station.call("StopTransaction", {
                    "transactionId": tx, "idTag": "ACN-DRIVER", "meterStop": s["r1"],
                    "timestamp": stamp(s["stop"], ms), "reason": "EVDisconnected"})
                continue
            ref = f"acn-{s['n']}"
            events = [("Started", s["start"], s["r0"], "Transaction.Begin"),
                      *(("Updated", at, wh, "Sample.Periodic") for at, wh in s["samples"]),
                      ("Ended", s["stop"], s["r1"], "Transaction.End")]
            for seq, (kind, at, wh, context) in enumerate(events):
                info = {"transactionId": ref}
                if kind == "Ended":
                    info["stoppedReason"] = "EVDisconnected"
                event = {"eventType": kind, "timestamp": stamp(at, ms), "seqNo": seq,
                         "triggerReason": {"Started": "Authorized", "Updated": "MeterValuePeriodic",
                                           "Ended": "EVDeparted"}[kind],
                         "transactionInfo": info,
                         "meterValue": [{"timestamp": stamp(at, ms),
                                         "sampledValue": [{**self.reading(wh, v), "context": context}]}]}
                if kind == "Started":
                    event["idToken"] = {"idToken": "ACN-DRIVER", "type": "ISO14443"}
                    event["evse"] = {"id": 1, "connectorId": 1}
                await station.call("TransactionEvent", event)

    async def killer(self) -> None:
        for fraction in self.kills:
            while self.acked < fraction * self.total:
                await asyncio.sleep(0.01)
            self.serve.kill()
            self.serve.start()

    async def play(self) -> dict:
        self.serve.start()
        try:
            async with aiohttp.ClientSession() as self.http:
                stations = [Station(sid, self.version[sid], self) for sid in self.sessions]
                killer = asyncio.ensure_future(self.killer())
                await asyncio.gather(*(self.station(s) for s in stations))
                await killer
                await asyncio.sleep(20)     # the last restart's set-ups
                not_set_up = [s.sid for s in stations if not s.profiles_on_this_connection]
                async with self.http.get(f"http://127.0.0.1:{self.serve.port}/api/sessions.csv",
                                         headers={"Authorization": "Bearer acn-admin"}) as r:
                    rows = list(csv.DictReader(io.StringIO(await r.text())))
                await close_all(stations)
        finally:
            self.serve.stop()
        billed = {(r["station_id"], float(r["meter_start_wh"] or "nan")): r for r in rows}
        wrong = sum(1 for sid, plan in self.sessions.items() for s in plan
                    if (r := billed.get((sid, float(s["r0"])))) is None or r["billable"] != "true"
                    or float(r["energy_wh"] or "nan") != s["r1"] - s["r0"])
        return {"sessions": sum(len(p) for p in self.sessions.values()), "rows": len(rows),
                "metered_wh": sum(s["r1"] - s["r0"] for p in self.sessions.values() for s in p),
                "billed_wh": sum(float(r["energy_wh"]) for r in rows if r["billable"] == "true"),
                "wrong": wrong, "problems": len(self.problems), "not_set_up": len(not_set_up)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", nargs="+", default=["2019-10-28", "2019-10-29"])
    parser.add_argument("--kills", nargs="*", type=float, default=[0.4],
                        help="fractions of the messages acknowledged at which serve is SIGKILLed")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rows = [r for r in acn.read_rows(acn.fetch()) if r["arrival"][:10] in set(args.days)]
    print(f"{'kills':<14} {'sessions':>8} {'rows':>5} {'metered Wh':>11} {'billed Wh':>11} "
          f"{'wrong':>5} {'schema':>6} {'not set up':>10}")
    for kills in ([], sorted(args.kills)):
        with tempfile.TemporaryDirectory() as tmp:
            out = asyncio.run(Run(rows, kills, args.seed, Path(tmp)).play())
        print(f"{','.join(map(str, kills)) or 'none':<14} {out['sessions']:>8} {out['rows']:>5} "
              f"{out['metered_wh']:>11.0f} {out['billed_wh']:>11.1f} {out['wrong']:>5} "
              f"{out['problems']:>6} {out['not_set_up']:>10}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
