import time
from aiohttp import web
# a round: 1.5 s, polls every 50 ms (30), 1400 requests and ~900 decrease entries spread evenly;
# history before it: setup 1000 sends + 2 earlier events/cancels ~ 5600 sends, 2000 decreases
hist_sent = [(float(i), "TxProfile/1") for i in range(6600)]
hist_dec = [(float(i), float(i), 2, "plans", f"CP{i}", 1.0, i) for i in range(2000)]
t0 = 10000.0
def poll(sent, dec, after, parts=None):
    RECORD = {"replans": [{"start": t0, "end": t0+0.2, "reasons": ["dr:x"]}], "rounds": [], "decreases": dec, "sent": sent}
    wanted = RECORD.keys() if parts is None else parts.split(",")
    return web.json_response({name: [r for r in RECORD[name] if (r["start"] if isinstance(r, dict) else r[0]) >= after] for name in wanted})
for parts in (None, "replans,rounds"):
    cpu = time.thread_time()
    for k in range(30):
        f = (k+1)/30
        sent = hist_sent + [(t0 + i*0.001, "TxDefaultProfile/0") for i in range(int(1400*f))]
        dec = hist_dec + [(t0 + i*0.001, t0+i*0.001, 2, "defaults", f"CP{i}", 1.0, i) for i in range(int(900*f))]
        c = time.thread_time()
        poll(sent, dec, t0 - 1.0, parts)
        cpu += 0  # build cost excluded below
    # measure only the handler part
    total = 0.0
    for k in range(30):
        f = (k+1)/30
        sent = hist_sent + [(t0 + i*0.001, "TxDefaultProfile/0") for i in range(int(1400*f))]
        dec = hist_dec + [(t0 + i*0.001, t0+i*0.001, 2, "defaults", f"CP{i}", 1.0, i) for i in range(int(900*f))]
        c = time.thread_time(); poll(sent, dec, t0 - 1.0, parts); total += time.thread_time() - c
    print(parts, f"handler CPU over a 1.5 s round's 30 polls: {total*1e3:.1f} ms")
