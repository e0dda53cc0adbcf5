import asyncio, json, time
import aiohttp
B = "http://127.0.0.1:18716"
H = {"Authorization": "Bearer admin-secret"}
async def main():
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect("ws://127.0.0.1:18716/ocpp/CP2", protocols=["ocpp1.6"])
        mode = {"m": None}
        async def reader():
            async for m in ws:
                msg = json.loads(m.data)
                if msg[0] == 2:
                    if msg[2] == "Reset":
                        await ws.send_str(mode["m"](msg[1]))
                    elif msg[2] == "GetConfiguration":
                        await ws.send_str(json.dumps([3, msg[1], {"unknownKey": msg[3].get("key", [])}]))
                    else:
                        await ws.send_str(json.dumps([3, msg[1], {"status": "Accepted"}]))
        t = asyncio.create_task(reader())
        await ws.send_str(json.dumps([2, "b", "BootNotification", {"chargePointVendor": "v", "chargePointModel": "m"}]))
        await asyncio.sleep(3)
        for name, m in [("valid Accepted", lambda u: json.dumps([3, u, {"status": "Accepted"}])),
                        ("schema-invalid {status: Maybe}", lambda u: json.dumps([3, u, {"status": "Maybe"}])),
                        ("malformed [3, id, []]", lambda u: json.dumps([3, u, []])),
                        ("malformed [4, id, code]", lambda u: json.dumps([4, u, "GenericError"]))]:
            mode["m"] = m
            a = time.monotonic()
            async with s.post(B + "/api/stations/CP2/reset", json={"type": "Soft"}, headers=H) as r:
                body = await r.json()
            print(f"| {name} | {r.status} `{body.get('error', 'answer')}` | {time.monotonic() - a:.3f} s |")
        t.cancel()
asyncio.run(main())
