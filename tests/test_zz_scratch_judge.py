import asyncio, json, logging, zlib, gzip
import aiohttp, pytest
from tests.conftest import API_TOKEN

async def raw(port, method, path, headers, body=b""):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_TOKEN}\r\nConnection: close\r\n"
    for k, v in headers.items():
        head += f"{k}: {v}\r\n"
    if "Transfer-Encoding" not in headers:
        head += f"Content-Length: {len(body)}\r\n"
    w.write(head.encode() + b"\r\n" + body)
    await w.drain()
    data = await asyncio.wait_for(r.read(), 10)
    w.close()
    return data.decode(errors="replace")

async def test_bodies(api, caplog):
    caplog.set_level(logging.WARNING)
    server, http = api
    port = server.port
    bomb = gzip.compress(b'{"limit_w": 5000' + b' ' * (200 << 20) + b'}', 9)
    print("bomb", len(bomb))
    cases = [("PUT", "/api/site/cap", {"Content-Type": "application/json", "Content-Encoding": "gzip"}, bomb)]
    for m, p, h, b in cases:
        try:
            out = await raw(port, m, p, h, b)
        except Exception as e:
            out = repr(e)
        first = out.split("\r\n")[0]
        bodytxt = out.split("\r\n\r\n", 1)[-1][:200]
        print(m, p, list(h.values())[-1][:30], "->", first, bodytxt.replace("\n", " "))
    errs = [r.getMessage()[:300] for r in caplog.records if r.levelno >= logging.ERROR]
    print("ERRS", errs)
