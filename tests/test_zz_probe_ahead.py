from datetime import timedelta, datetime, UTC
import asyncio
from tests.v201_billing import sessions

async def test_ahead(controlled):
    h = controlled
    ahead = timedelta(minutes=5)
    now = datetime.now(UTC).replace(microsecond=0)
    cp = await h.station()
    o = (await cp.start_tx(1, 10_000, now - timedelta(minutes=30) + ahead)).transaction_id
    await cp.meter(1, o, now - timedelta(minutes=2) + ahead, 12_000)
    await cp.boot()                                 # rebooted: O closed
    print("AFTER BOOT", [(r.transaction_id, r.state) for r in await sessions(h)])
    # its queue: the sample measured a minute before the reboot
    await cp.meter(1, o, now - timedelta(minutes=1) + ahead, 12_200)
    print("AFTER QUEUED", [(r.transaction_id, r.state, r.flags) for r in await sessions(h)])
    await asyncio.sleep(1)
    async with h.api.get(h.url("/api/site")) as r:
        j = await r.json()
    print("SITE", j["sessions"], [c for c in j["connectors"] if c["station_id"] == "CP1"][:1])
