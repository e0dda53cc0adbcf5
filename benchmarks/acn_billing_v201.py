"""Caltech ACN sessions replayed through OCPP 2.0.1 stations that use what the spec allows
against `smartcharge serve`, SIGKILLed at bad moments: is every session billed exactly what its
meter said, once?

    python -m benchmarks.acn_billing_v201 [--days 2019-10-28 2019-10-29] [--kills 0.3 0.7]
                                          [--ended-kill] [--seed 1]

Session 25's replay (`benchmarks/acn_billing.py`) sent plain events: one register per event. Here
every station is 2.0.1 and each session is sent the way a strict, chatty station sends it:
- the car's needs (NotifyEVChargingNeeds: the driver's ACN energy and departure) before the
  Started for half the sessions (TxStartPoint PowerPathClosed), after it for the others;
- a third of the transactions start on the cable (no idToken in the Started; it comes in an
  Updated with triggerReason Authorized);
- each sample carries the register beside Energy.Active.Import.Interval, Energy.Active.Net,
  Energy.Active.Export.Register, Power.Active.Import and Current.Import; the register in one of
  five forms per station (Wh; kWh with 3 decimals; Wh with `multiplier` 3; per phase only, L1 +
  L2 + L3; Wh with a signedMeterValue);
- chargingState Charging, then SuspendedEV once the car is full;
- the Ended repeats every sample of the transaction (TxEndedMeasurands) before its
  Transaction.End register.
`serve` is SIGKILLed when each fraction of `--kills` of the messages is acknowledged, and with
`--ended-kill` first at the moment a TransactionEvent Ended is committed and not yet answered
(`tests/kill_point.py`); a station re-sends what was not answered, after a BootNotification half
the time, and sends the next few events of its queue with `offline: true`. Every frame the
server sends is checked against the official schemas with formats. The table: what the meters
said, what the CSV bills, the sessions billed wrong, the rows billed more than once.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from benchmarks import acn
from benchmarks.acn_billing import SAMPLE_S, CAR_W, Run, Serve, Station, close_all, stamp

KILL_POINT = Path(__file__).resolve().parent.parent / "tests" / "kill_point.py"
FORMS = ("Wh", "kWh", "multiplier", "phases", "signed")


class KillPointServe(Serve):
    """The first start dies at a named moment (tests/kill_point.py); the others run plain."""

    def __init__(self, config: Path, db: Path, point: str | None) -> None:
        super().__init__(config, db)
        self.point = point

    def start(self) -> None:
        if self.point is None:
            return super().start()
        import subprocess
        self.proc = subprocess.Popen(
            [sys.executable, str(KILL_POINT), self.point, "serve", "--config", str(self.config),
             "--port", str(self.port), "--db", str(self.db), "--log-level", "WARNING"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.point = None
        assert "listening" in self.proc.stdout.readline()


class OfflineAwareStation(Station):
    """Re-sends as session 25's station does; after a lost connection the next few events of
    its queue go out with `offline: true` (they happened while it could not send)."""

    offline_left = 0

    def _as_sent(self, action: str, payload: dict) -> dict:
        if action == "TransactionEvent" and self.offline_left > 0:
            self.offline_left -= 1
            return {**payload, "offline": True}
        return payload

    def _connection_lost(self) -> None:
        self.offline_left = self.run.rnd.randint(0, 4)


class Run201(Run):
    def __init__(self, rows: list[dict], kills: list[float], seed: int, workdir: Path,
                 ended_kill: bool) -> None:
        super().__init__(rows, kills, seed, workdir)
        self.version = {sid: "2.0.1" for sid in self.sessions}
        self.form = {sid: FORMS[i % len(FORMS)] for i, sid in enumerate(sorted(self.sessions))}
        self.serve = KillPointServe(self.serve.config, self.serve.db,
                                    "answer:TransactionEvent/Ended" if ended_kill else None)
        self.by_n = {int(row_n): row for row_n, row in enumerate(
            sorted(rows, key=lambda r: r["arrival"]))}
        self.shift = datetime.now(UTC) - timedelta(minutes=2) - max(
            datetime.fromisoformat(r["departure"]) for r in rows)
        # the messages every session sends at least (needs, Started, samples, Ended; kills wait
        # on `acked`, which also counts the Authorized and SuspendedEV events)
        self.total = sum(3 + len(s["samples"]) for p in self.sessions.values() for s in p)

    def sampled(self, sid: str, wh: int, context: str, last_wh: int, power_w: float) -> list:
        form = self.form[sid]
        register = {"measurand": "Energy.Active.Import.Register", "context": context}
        if form == "Wh":
            registers = [{**register, "value": wh, "unitOfMeasure": {"unit": "Wh"}}]
        elif form == "kWh":
            registers = [{**register, "value": round(wh / 1000, 3),
                          "unitOfMeasure": {"unit": "kWh"}}]
        elif form == "multiplier":
            registers = [{**register, "value": round(wh / 1000, 3),
                          "unitOfMeasure": {"unit": "Wh", "multiplier": 3}}]
        elif form == "phases":
            third = wh // 3
            registers = [{**register, "value": v, "phase": p, "unitOfMeasure": {"unit": "Wh"}}
                         for p, v in (("L1", third), ("L2", third), ("L3", wh - 2 * third))]
        else:
            registers = [{**register, "value": wh, "unitOfMeasure": {"unit": "Wh"},
                          "signedMeterValue": {"signedMeterData": f"OCMF|{{\"RD\":{wh}}}",
                                               "signingMethod": "ECDSA-secp256r1-SHA256",
                                               "encodingMethod": "OCMF",
                                               "publicKey": "MFkwEwYHKoZIzj0CAQYIKoZIzj0"}}]
        others = [{"measurand": "Energy.Active.Import.Interval", "context": context,
                   "value": wh - last_wh, "unitOfMeasure": {"unit": "Wh"}},
                  {"measurand": "Energy.Active.Net", "context": context, "value": wh},
                  {"measurand": "Energy.Active.Export.Register", "context": context, "value": 0},
                  {"measurand": "Power.Active.Import", "context": context, "value": power_w,
                   "unitOfMeasure": {"unit": "W"}},
                  {"measurand": "Current.Import", "context": context, "phase": "L1",
                   "value": round(power_w / 208.0, 1), "unitOfMeasure": {"unit": "A"}}]
        return registers + others

    async def station(self, station: Station) -> None:
        sid = station.sid
        for s in self.sessions[sid]:
            rnd = self.rnd
            ms = rnd.random() < 0.5
            ref = f"acn-{s['n']}"
            row = self.by_n[s["n"]]
            needs_first = rnd.random() < 0.5
            cable_first = rnd.random() < 1 / 3
            seq = 0
            token = {"idToken": "ACN-DRIVER", "type": "ISO14443"}

            def event(kind, at, trigger, meter, **info):
                nonlocal seq
                body = {"eventType": kind, "timestamp": stamp(at, ms), "seqNo": seq,
                        "triggerReason": trigger,
                        "transactionInfo": {"transactionId": ref, **info}}
                if meter:
                    body["meterValue"] = meter
                seq += 1
                return body

            needs = {"evseId": 1, "chargingNeeds": {
                "requestedEnergyTransfer": "AC_single_phase",
                "departureTime": stamp((datetime.fromisoformat(
                    row["estimated_departure"] or row["departure"]) + self.shift
                ).astimezone(UTC), False),
                "acChargingParameters": {
                    "energyAmount": round(float(row["requested_energy (kWh)"] or 0) * 1000),
                    "evMinCurrent": 6, "evMaxCurrent": 32, "evMaxVoltage": 208}}}
            if needs_first:
                await station.call("NotifyEVChargingNeeds", needs)
            started = event("Started", s["start"],
                            "CablePluggedIn" if cable_first else "Authorized",
                            [{"timestamp": stamp(s["start"], ms), "sampledValue": self.sampled(
                                sid, s["r0"], "Transaction.Begin", s["r0"], 0.0)}],
                            chargingState="EVConnected" if cable_first else "Charging")
            started["evse"] = {"id": 1, "connectorId": 1}
            if not cable_first:
                started["idToken"] = token
            await station.call("TransactionEvent", started)
            if cable_first:
                authorized = event("Updated", s["start"] + timedelta(seconds=20), "Authorized",
                                   None, chargingState="Charging")
                authorized["idToken"] = token
                await station.call("TransactionEvent", authorized)
            if not needs_first:
                await station.call("NotifyEVChargingNeeds", needs)
            periodic, last_wh, full = [], s["r0"], False
            for at, wh in s["samples"]:
                meter = {"timestamp": stamp(at, ms), "sampledValue": self.sampled(
                    sid, wh, "Sample.Periodic", last_wh, CAR_W if wh > last_wh else 0.0)}
                periodic.append(meter)
                await station.call("TransactionEvent", event(
                    "Updated", at, "MeterValuePeriodic", [meter]))
                if wh == s["r1"] and not full:
                    full = True
                    await station.call("TransactionEvent", event(
                        "Updated", at + timedelta(seconds=1), "ChargingStateChanged", None,
                        chargingState="SuspendedEV"))
                last_wh = wh
            end = {"timestamp": stamp(s["stop"], ms), "sampledValue": self.sampled(
                sid, s["r1"], "Transaction.End", last_wh, 0.0)}
            await station.call("TransactionEvent", event(
                "Ended", s["stop"], "EVDeparted", periodic + [end],
                stoppedReason="EVDisconnected", chargingState="Idle"))

    async def play(self) -> dict:
        self.serve.start()
        try:
            async with aiohttp.ClientSession() as self.http:
                stations = [OfflineAwareStation(sid, "2.0.1", self) for sid in self.sessions]
                killer = asyncio.ensure_future(self.killer())
                runs = asyncio.gather(*(self.station(s) for s in stations))
                while not runs.done():
                    # the kill point's server dies by itself: start the plain one
                    if self.serve.proc.poll() is not None:
                        self.serve.start()
                    await asyncio.sleep(0.2)
                await runs
                await killer
                async with self.http.get(f"http://127.0.0.1:{self.serve.port}/api/sessions.csv",
                                         headers={"Authorization": "Bearer acn-admin"}) as r:
                    rows = list(csv.DictReader(io.StringIO(await r.text())))
                async with self.http.get(f"http://127.0.0.1:{self.serve.port}/api/sessions",
                                         params={"limit": "100000"},
                                         headers={"Authorization": "Bearer acn-admin"}) as r:
                    refs = {str(j["transaction_id"]): j["station_transaction_id"]
                            for j in await r.json()}
                await close_all(stations)
        finally:
            self.serve.stop()
        billable: dict[tuple[str, str], list[dict]] = {}
        for r in rows:
            if r["billable"] == "true":
                billable.setdefault((r["station_id"], refs[r["transaction_id"]]), []).append(r)
        wrong = []
        for sid, plan in self.sessions.items():
            for s in plan:
                got = billable.get((sid, f"acn-{s['n']}"), [])
                if len(got) != 1 or float(got[0]["energy_wh"] or "nan") != s["r1"] - s["r0"]:
                    wrong.append((sid, s["n"], s["r1"] - s["r0"],
                                  [(g["energy_wh"], g["flags"]) for g in got]))
        return {"sessions": sum(len(p) for p in self.sessions.values()), "rows": len(rows),
                "metered_wh": sum(s["r1"] - s["r0"] for p in self.sessions.values() for s in p),
                "billed_wh": sum(float(r["energy_wh"]) for r in rows if r["billable"] == "true"),
                "wrong": wrong, "twice": sum(len(v) > 1 for v in billable.values()),
                "problems": self.problems}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", nargs="+", default=["2019-10-28", "2019-10-29"])
    parser.add_argument("--kills", nargs="*", type=float, default=[0.3, 0.7])
    parser.add_argument("--ended-kill", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rows = [r for r in acn.read_rows(acn.fetch()) if r["arrival"][:10] in set(args.days)]
    print(f"{'kills':<22} {'sessions':>8} {'rows':>5} {'metered Wh':>11} {'billed Wh':>11} "
          f"{'wrong':>5} {'twice':>5} {'schema':>6}")
    for kills, ended in (([], False), (sorted(args.kills), args.ended_kill)):
        with tempfile.TemporaryDirectory() as tmp:
            out = asyncio.run(Run201(rows, kills, args.seed, Path(tmp), ended).play())
        name = ("ended+" if ended else "") + (",".join(map(str, kills)) or "none")
        print(f"{name:<22} {out['sessions']:>8} {out['rows']:>5} {out['metered_wh']:>11.0f} "
              f"{out['billed_wh']:>11.1f} {len(out['wrong']):>5} {out['twice']:>5} "
              f"{len(out['problems']):>6}")
        for line in out["wrong"][:10]:
            print("   wrong:", line)
        for line in out["problems"][:10]:
            print("   schema:", line)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
