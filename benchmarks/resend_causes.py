"""Why each charging profile was sent: every row of a store's audit table (`profiles_sent`),
classified against the profile sent before it on the same layer (station, connector, profile
id), then counted per cause and per dispatch round. Counted, not guessed (issue 10: ~1 300
profiles per re-plan at 5 000 stations).

    SMARTCHARGE_BENCH_DB=/tmp/run.sqlite python -m benchmarks.ocpp_load --stations 5000 ...
    python -m benchmarks.resend_causes /tmp/run.sqlite [--gap-s 3]

Causes (the first that fits), OCPP 1.6 and 2.0.1 payloads alike:

- `first`: the first profile on its layer (set-up: the station's maximum, a fail-safe default,
  a connector's first plan or idle share);
- `new-tx`: a transaction profile for another transaction than the last one;
- `retry`: the last one on the layer was not accepted;
- `identical`: the same limits over the same time as the last one (a re-send for nothing);
- `end-moved`: the same limits wherever both are in force, only the end differs (the common
  `expiry` moved on: dispatch.py `_refresh_expiry`);
- `retimed`: the same set of levels, only the times of their steps moved (the slot grid, a
  raise's delay `edges.held`);
- `lower` / `raise-small` / `raise`: a limit lower somewhere (a decrease), or only higher -
  small when by at most `SMALL_W` W and `SMALL_FRACTION` of the old limit everywhere.

Where both are in force from the row's send on, the comparison reads both schedules as limits
over absolute time (each station's unit: A per phase or W, compared as such); the end of each is
its duration (none: for ever). Rounds are runs of rows less than `--gap-s` apart (the server's
clock).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from bisect import bisect_right
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

SMALL_W = 1000.0          # a "small" change: at most this many W ...
SMALL_FRACTION = 0.10     # ... and this fraction of the old limit, everywhere
JITTER_S = 2.0            # the same levels with edges at most this far apart: "edge-jitter"
VOLTS_3PH_W_PER_A = 3 * 230.0   # an A-per-phase limit read as W (3 phases, 230 V): sizes only


@dataclass(frozen=True)
class Profile:
    key: tuple                       # (station, connector, profile id)
    purpose: str
    tx: object                       # the transaction it is for (None: a default)
    steps: list[tuple[datetime, float]]   # (from, limit) in the station's unit
    end: datetime | None             # None: no end
    unit: str
    answer: str
    sent_at: datetime


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def parse(row: sqlite3.Row) -> Profile:
    payload = json.loads(row["profile_json"])
    if "csChargingProfiles" in payload:          # OCPP 1.6
        profile = payload["csChargingProfiles"]
        schedule = profile["chargingSchedule"]
        pid, purpose = profile["chargingProfileId"], profile["chargingProfilePurpose"]
        tx = profile.get("transactionId")
        connector = payload["connectorId"]
    else:                                        # OCPP 2.0.1: chargingProfile, evseId
        profile = payload["chargingProfile"]
        schedule = profile["chargingSchedule"]
        schedule = schedule[0] if isinstance(schedule, list) else schedule
        pid, purpose = profile["id"], profile["chargingProfilePurpose"]
        tx = profile.get("transactionId")
        connector = payload.get("evseId", row["connector_id"])
    start = _time(schedule["startSchedule"])
    steps = [(start + timedelta(seconds=p["startPeriod"]), float(p["limit"]))
             for p in schedule["chargingSchedulePeriod"]]
    duration = schedule.get("duration")
    end = None if duration is None else start + timedelta(seconds=duration)
    return Profile((row["station_id"], connector, pid), purpose, tx, steps, end,
                   schedule["chargingRateUnit"], row["answer"] or "", _time(row["sent_at"]))


def value_at(steps: list[tuple[datetime, float]], moment: datetime) -> float:
    value = steps[0][1]
    for at, v in steps:
        if at <= moment:
            value = v
        else:
            break
    return value


def _as_w(value: float, unit: str) -> float:
    return value * VOLTS_3PH_W_PER_A if unit == "A" else value


def classify(old: Profile | None, new: Profile) -> str:
    if old is None:
        return "first"
    if new.tx != old.tx:
        return "new-tx"
    if old.answer != "Accepted":
        return "retry"
    if old.steps == new.steps and old.end == new.end:
        return "identical"
    since = new.sent_at
    ends = [e for e in (old.end, new.end) if e is not None]
    until = min(ends) if ends else None
    old_live, new_live = _live(old, since, until), _live(new, since, until)
    if [v for _, v in old_live] == [v for _, v in new_live]:
        if all(abs((a - b).total_seconds()) <= JITTER_S
               for (a, _), (b, _) in zip(old_live[1:], new_live[1:])):
            if old_live == new_live:
                return "identical" if old.end == new.end else (
                    f"end-moved {_seconds(new.end, old.end)}")
            return "edge-jitter" + ("" if old.end == new.end else
                                    f" + end-moved {_seconds(new.end, old.end)}")
        return "retimed"
    lowers, raises, small = False, False, True
    moments = sorted({since} | {m for m, _ in old.steps + new.steps
                                if m > since and (until is None or m < until)})
    for moment in moments:
        before, after = value_at(old.steps, moment), value_at(new.steps, moment)
        if after < before - 1e-9:
            lowers = True
            step_w = _as_w(before - after, new.unit)
        elif after > before + 1e-9:
            raises = True
            step_w = _as_w(after - before, new.unit)
        else:
            continue
        if step_w > SMALL_W or abs(after - before) > SMALL_FRACTION * max(before, 1e-9):
            small = False
    kind = "lower" if lowers and not raises else "raise" if raises and not lowers else "both"
    return kind + ("-small" if small else "")


def _seconds(a: datetime | None, b: datetime | None) -> str:
    if a is None or b is None:
        return "none"
    return f"{(a - b).total_seconds():+.0f} s"


def _live(profile: Profile, since: datetime, until: datetime | None
          ) -> list[tuple[datetime, float]]:
    """(moment, limit) where the limit changes, from `since` until `until`."""
    out = [(since, value_at(profile.steps, since))]
    for moment, value in profile.steps:
        if moment > since and (until is None or moment < until) and value != out[-1][1]:
            out.append((moment, value))
    return out


def rounds(times: list[datetime], gap_s: float) -> list[int]:
    """A round index per row: rows less than gap_s apart belong to one round."""
    out, index = [], -1
    last = None
    for at in times:
        if last is None or (at - last).total_seconds() >= gap_s:
            index += 1
        out.append(index)
        last = at
    return out


def replans_from_log(path: str) -> list[tuple[datetime, str]]:
    """(when, reasons) of every re-plan in a server log written with the controller's debug
    lines (`SMARTCHARGE_PROBE_DEBUG=smartcharge.site.controller SMARTCHARGE_BENCH_LOG=FILE`):
    `2026-12-06 05:24:05,123 DEBUG smartcharge.site.controller: re-planned (slot): ...`."""
    out = []
    with open(path, errors="replace") as log:
        for line in log:
            if "re-planned (" not in line:
                continue
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC)
            reasons = line.split("re-planned (", 1)[1].split(")", 1)[0]
            out.append((stamp, reasons))
    return out


def by_replan(times: list[datetime], replans: list[tuple[datetime, str]]) -> list[int]:
    """The index of the last re-plan logged at or before each row (-1: before the first)."""
    moments = [at for at, _ in replans]
    return [bisect_right(moments, at) - 1 for at in times]


def count(database: str, gap_s: float = 3.0, log: str | None = None) -> dict:
    db = sqlite3.connect(database)
    db.row_factory = sqlite3.Row
    rows = db.execute("SELECT * FROM profiles_sent ORDER BY id").fetchall()
    db.close()
    last: dict[tuple, Profile] = {}
    causes: Counter = Counter()
    by_purpose: Counter = Counter()
    per_round: dict[int, Counter] = defaultdict(Counter)
    profiles = [parse(row) for row in rows]
    replans = replans_from_log(log) if log else []
    times = [p.sent_at for p in profiles]
    index = by_replan(times, replans) if replans else rounds(times, gap_s)
    round_times: dict[int, datetime] = {i: at for i, (at, _) in enumerate(replans)}
    for profile, r in zip(profiles, index):
        cause = classify(last.get(profile.key), profile)
        last[profile.key] = profile
        causes[cause] += 1
        by_purpose[(profile.purpose, cause)] += 1
        per_round[r][cause] += 1
        if not replans:
            round_times.setdefault(r, profile.sent_at)
    return {"rows": len(profiles), "causes": causes, "by_purpose": by_purpose,
            "per_round": per_round, "round_times": round_times,
            "reasons": {i: why for i, (_, why) in enumerate(replans)}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database")
    parser.add_argument("--gap-s", type=float, default=3.0,
                        help="rows this far apart (server clock) start a new round")
    parser.add_argument("--log", help="the server's log with the controller's debug lines: "
                                      "rows counted per re-plan (the last one before each)")
    args = parser.parse_args(argv)
    result = count(args.database, args.gap_s, args.log)
    names = sorted(result["causes"], key=lambda c: -result["causes"][c])
    print(f"# {result['rows']} profiles sent")
    print("| cause | profiles | share |")
    print("|---|---:|---:|")
    for name in names:
        print(f"| {name} | {result['causes'][name]} | "
              f"{result['causes'][name] / max(result['rows'], 1):.0%} |")
    print("\n| purpose | cause | profiles |")
    print("|---|---|---:|")
    for (purpose, cause), n in sorted(result["by_purpose"].items(), key=lambda kv: -kv[1]):
        print(f"| {purpose} | {cause} | {n} |")
    print("\n# per re-plan (the rows after it until the next)" if args.log else
          f"\n# rounds (rows less than {args.gap_s} s apart)")
    print("| round | at | why | profiles | " + " | ".join(names) + " |")
    print("|---:|---|---|---:|" + "---:|" * len(names))
    for r, counter in sorted(result["per_round"].items()):
        at = result["round_times"].get(r)
        why = result["reasons"].get(r, "")
        why = why if len(why) < 40 else why[:37] + "..."
        print(f"| {r} | {'' if at is None else f'{at:%H:%M:%S}'} | {why} | "
              f"{sum(counter.values())} | "
              + " | ".join(str(counter.get(n, 0)) for n in names) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
