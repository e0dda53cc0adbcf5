"""s38-stall: every turn of the server's loop over 20 ms (CPU or wall) in one ocpp_load run, by
phase and by cause, from the server's record (SMARTCHARGE_BENCH_STATS=FILE with
SMARTCHARGE_PROBE_TURNS=0.015).

    python3 benchmarks/results/s38-stall/causes.py STATS.json [--list]

Phases: boot (first connection .. boot storm settled), set-up (.. the window), window, after (the
stations leaving). A turn's CPU by what ran in it (serve_probe.trace_turns: each callback's CPU
by kind, the collections' CPU apart) grouped into causes; the turn's cause is its largest group.
Turns over 20 ms of wall but not of CPU are put down to the wait for a CPU when the loop thread's
run-queue delay in it (schedstat) is most of the rest."""
import json
import sys

GROUPS = [   # (cause, substrings of a callback kind)
    ("stations' handler steps (frames, store answers)", ("RequestHandler._handle_request",)),
    ("socket reads / connections", ("_read_ready", "connection_made", "_accept_connection",
                                    "RequestHandler.start", "_add_reader", "connection_lost",
                                    "_call_connection_lost", "_flush_heartbeat_reset")),
    ("aiohttp pings", ("_send_heartbeat",)),
    ("guard pass", ("_guard_pass",)),
    ("dispatch round", ("DispatchRound.", "Dispatcher._round", "_sender", "StationSender")),
    ("set-ups (fail-safe, capabilities)", ("FailSafeSetup", "setup_station", "Setup")),
    ("phase probes", ("PhaseProbing",)),
    ("re-plan steps (controller)", ("SiteController.run", "SiteController._run", "replan")),
    ("store writer's pipe", ("WriterProcess",)),
    ("the benchmark's probe", ("probe_ctx", "serve_probe", "snapshot")),
]


def group_of(kind: str) -> str:
    for cause, keys in GROUPS:
        if any(k in kind for k in keys):
            return cause
    return "other: " + kind


def main(path: str, listing: bool = False) -> None:
    s = json.load(open(path))
    boot0, boot1 = s["boot"]
    w0, w1 = s["window"]

    def phase(at: float) -> str:
        return ("boot" if at <= boot1 else "set-up" if at < w0 else "window" if at <= w1
                else "after")
    traced = sorted(s.get("turns") or [], key=lambda e: e[0])
    by_phase: dict[str, dict[str, list]] = {}
    for e in traced:
        at, spent = e[0], e[1]
        if spent <= 0.020:
            continue
        kinds = e[3]
        gc_s = e[5][0] if len(e) > 5 else 0.0
        groups: dict[str, float] = {}
        for kind, n, ms in kinds:
            g = group_of(kind)
            groups[g] = groups.get(g, 0.0) + ms
        if gc_s:
            groups["young collection"] = groups.get("young collection", 0.0) + gc_s * 1000
        cause = max(groups.items(), key=lambda kv: kv[1])[0]
        entry = by_phase.setdefault(phase(at), {}).setdefault(cause, [0, 0.0, {}])
        entry[0] += 1
        entry[1] = max(entry[1], spent * 1000)
        for g, ms in groups.items():
            entry[2][g] = entry[2].get(g, 0.0) + ms
        if listing:
            print(f"{phase(at):7s} +{at - boot0:6.1f} s {spent * 1000:5.1f} ms CPU: " + "; ".join(
                f"{g} {ms:.1f}" for g, ms in sorted(groups.items(), key=lambda kv: -kv[1])))
    print(f"turns over 20 ms CPU (SMARTCHARGE_PROBE_TURNS), by phase and largest cause "
          f"(n, the longest, the mean turn's make-up in ms):")
    for ph in ("boot", "set-up", "window", "after"):
        for cause, (n, longest, groups) in sorted(by_phase.get(ph, {}).items(),
                                                   key=lambda kv: -kv[1][0]):
            makeup = ", ".join(f"{g} {ms / n:.1f}" for g, ms in
                               sorted(groups.items(), key=lambda kv: -kv[1])[:5])
            print(f"  {ph:7s} {n:4d}  {longest:5.1f} ms  {cause}  [{makeup}]")
    # wall: every turn over 20 ms either way (serve_probe.record_turn_lengths)
    counts: dict[str, list] = {}
    for at, cpu, wall, delay, *_ in s.get("long_turns") or []:
        if wall <= 0.020 and cpu <= 0.020:
            continue
        if cpu > 0.020:
            why = "CPU over 20 ms"
        elif delay >= 0.5 * (wall - cpu):
            why = "wall only: waiting for a CPU (run queue)"
        else:
            why = "wall only: other (GIL, page faults)"
        c = counts.setdefault((phase(at), why), [0, 0.0, 0.0])
        c[0] += 1
        c[1] = max(c[1], wall * 1000)
        c[2] += delay
    print("turns over 20 ms wall or CPU (record_turn_lengths), by phase: n, the longest wall, "
          "their summed wait for a CPU")
    for (ph, why), (n, longest, delay) in sorted(counts.items()):
        print(f"  {ph:7s} {n:5d}  {longest:6.1f} ms  {delay:6.2f} s  {why}")


if __name__ == "__main__":
    main(sys.argv[1], "--list" in sys.argv)
