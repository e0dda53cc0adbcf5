"""Server-side loop CPU per WebSocket round trip (server sends a frame, a client in another
process answers), aiohttp server as smartcharge's."""
import asyncio, time, sys, os, multiprocessing
from aiohttp import web, WSMsgType
import aiohttp

N = 20000
PAYLOAD = '[2,"abcdef012345-123","SetChargingProfile",{"connectorId":1,"csChargingProfiles":{"chargingProfileId":101,"stackLevel":0,"chargingProfilePurpose":"TxDefaultProfile","chargingProfileKind":"Absolute","chargingSchedule":{"chargingRateUnit":"A","startSchedule":"2026-12-07T06:00:00.000Z","chargingSchedulePeriod":[{"startPeriod":0,"limit":6.0,"numberPhases":3},{"startPeriod":7200,"limit":10.7,"numberPhases":3}]}}}]'

def client(port):
    async def run():
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(f"http://127.0.0.1:{port}/ws", protocols=("ocpp1.6",)) as ws:
                async for msg in ws:
                    if msg.type != WSMsgType.TEXT: break
                    await ws.send_str('[3,"abcdef012345-123",{"status":"Accepted"}]')
    asyncio.run(run())

async def main(port):
    done = asyncio.Event(); res = {}
    async def handler(request):
        ws = web.WebSocketResponse(protocols=("ocpp1.6",), autoping=True, heartbeat=60)
        await ws.prepare(request)
        for i in range(500):
            await ws.send_str(PAYLOAD); await ws.receive()
        t = time.thread_time()
        for i in range(N):
            await ws.send_str(PAYLOAD)
            m = await ws.receive()
        res['cpu'] = (time.thread_time() - t) / N
        await ws.close(); done.set()
        return ws
    app = web.Application(); app.router.add_get('/ws', handler)
    runner = web.AppRunner(app); await runner.setup()
    site = web.TCPSite(runner, '127.0.0.1', port); await site.start()
    p = multiprocessing.Process(target=client, args=(port,)); p.start()
    await done.wait(); p.join(); await runner.cleanup()
    print(f"server loop CPU per round trip: {res['cpu']*1e6:.0f} us; load {os.getloadavg()[0]:.1f}")

asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 18777))
