import asyncio, json, logging
import aiohttp, pytest
from tests.conftest import make_site, API_TOKEN

READER = "rdr-token"
@pytest.fixture
def site():
    return make_site(reader_tokens=frozenset({READER}))

BAD = ["-1", "0", "1e3", "\u0663", "%00", "x" * 5000, "%2e%2e", "..", "%ff", "1%0a2", "9" * 30, " 1", "1 ", "+1", "0x10", "１"]

async def test_paths(harness, caplog):
    caplog.set_level(logging.WARNING)
    st = await harness.station("CP1")
    out = []
    for bad in BAD:
        for path in [f"/api/sessions/{bad}", f"/api/sessions/{bad}/meter-values", f"/api/stations/{bad}",
                     f"/api/demand-response/events/{bad}", f"/api/stations/{bad}/configuration",
                     f"/api/stations/CP1/composite-schedule?connector_id={bad}&duration_s={bad}",
                     f"/api/sessions?limit={bad}", f"/api/sessions?after={bad}", f"/api/sessions.csv?station={bad}",
                     f"/api/sessions?since={bad}"]:
            try:
                async with harness.api.get(harness.url("/") + path.lstrip("/")) as r:
                    body = await r.text()
                    if r.status >= 500 or (r.status >= 400 and "detail" not in body):
                        out.append((path[:80], r.status, body[:200]))
            except Exception as e:
                out.append((path[:80], repr(e)[:200]))
        for path, body in [(f"/api/sessions/{bad}", {"requested_wh": 1}), (f"/api/demand-response/events/{bad}", {"limit_w": 1})]:
            async with harness.api.put(harness.url("/") + path.lstrip("/"), json=body) as r:
                t = await r.text()
                if r.status >= 500 or "detail" not in t:
                    out.append(("PUT", path[:80], r.status, t[:200]))
    errs = [r.getMessage()[:200] for r in caplog.records if r.levelno >= logging.ERROR]
    print("\nOUT", *out, sep="\n")
    print("ERRS", errs)
