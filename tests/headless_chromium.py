"""Drive Debian's headless Chromium over the DevTools protocol with nothing but aiohttp.

Used by the dashboard tests (and handy for screenshots): start the browser, open a page, evaluate
JavaScript, wait for a condition with a bounded timeout, capture a PNG.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
import shutil
import tempfile
from pathlib import Path

import aiohttp

_LISTENING = re.compile(rb"DevTools listening on (ws://\S+)")


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class BrowserError(RuntimeError):
    pass


class Page:
    """One page target, spoken to over its DevTools WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._events: list[dict] = []
        self._event_arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            future = self._pending.pop(data.get("id"), None)
            if future is not None and not future.done():
                if "error" in data:
                    future.set_exception(BrowserError(f"{data['error']}"))
                else:
                    future.set_result(data.get("result", {}))
            elif "method" in data:
                self._events.append(data)
                self._event_arrived.set()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(BrowserError("DevTools connection closed"))

    async def send(self, method: str, params: dict | None = None, timeout_s: float = 15.0) -> dict:
        call_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        await self._ws.send_str(json.dumps({"id": call_id, "method": method, "params": params or {}}))
        return await asyncio.wait_for(future, timeout_s)

    async def wait_event(self, method: str, timeout_s: float = 15.0) -> dict:
        async def _wait() -> dict:
            while True:
                for event in self._events:
                    if event["method"] == method:
                        self._events.remove(event)
                        return event
                self._event_arrived.clear()
                await self._event_arrived.wait()

        return await asyncio.wait_for(_wait(), timeout_s)

    async def navigate(self, url: str, timeout_s: float = 15.0) -> None:
        await self.send("Page.enable")
        self._events = [e for e in self._events if e["method"] != "Page.loadEventFired"]
        await self.send("Page.navigate", {"url": url})
        await self.wait_event("Page.loadEventFired", timeout_s)

    async def evaluate(self, expression: str):
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"JavaScript error in {expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout_s: float = 10.0):
        """Resolve when `expression` is truthy in the page; the browser checks it every frame."""
        script = f"""new Promise((resolve, reject) => {{
            const deadline = performance.now() + {timeout_s * 1000};
            const tick = () => {{
                let value;
                try {{ value = ({expression}); }} catch (e) {{ value = undefined; }}
                if (value) return resolve(value);
                if (performance.now() > deadline) return reject(new Error("timed out waiting for: " + {json.dumps(expression)}));
                setTimeout(tick, 25);
            }};
            tick();
        }})"""
        result = await self.send(
            "Runtime.evaluate",
            {"expression": script, "returnByValue": True, "awaitPromise": True},
            timeout_s=timeout_s + 5,
        )
        if "exceptionDetails" in result:
            raise BrowserError(result["exceptionDetails"].get("exception", {}).get("description", str(result)))
        return result["result"].get("value")

    async def screenshot(self, path: Path | str) -> Path:
        path = Path(path)
        result = await self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(result["data"]))
        return path

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class Chromium:
    """A headless Chromium process with remote debugging on a free port."""

    def __init__(self, binary: str, width: int = 1440, height: int = 900) -> None:
        self._binary = binary
        self._size = (width, height)
        self._profile = tempfile.TemporaryDirectory(prefix="smartcharge-chromium-")
        self._proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None
        self.http_base = ""

    async def start(self, timeout_s: float = 30.0) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            self._binary, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            f"--window-size={self._size[0]},{self._size[1]}",
            f"--user-data-dir={self._profile.name}", "--remote-debugging-port=0", "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        browser_ws = await asyncio.wait_for(self._read_listening_line(), timeout_s)
        # Keep reading stderr so Chromium never blocks on a full pipe.
        self._drain = asyncio.create_task(self._proc.stderr.read())
        self.http_base = "http://" + browser_ws.split("/")[2]
        self._session = aiohttp.ClientSession()

    async def _read_listening_line(self) -> str:
        while True:
            line = await self._proc.stderr.readline()
            if not line:
                raise BrowserError(f"{self._binary} exited before DevTools was ready")
            match = _LISTENING.search(line)
            if match:
                return match.group(1).decode()

    async def new_page(self) -> Page:
        async with self._session.put(f"{self.http_base}/json/new?about:blank") as resp:
            target = await resp.json(content_type=None)
        ws = await self._session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        await page.send("Emulation.setDeviceMetricsOverride", {
            "width": self._size[0], "height": self._size[1], "deviceScaleFactor": 1, "mobile": False,
        })
        return page

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            try:
                await asyncio.wait_for(self._proc.wait(), 10)
            except asyncio.TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        if self._drain is not None:
            with contextlib.suppress(Exception):
                await self._drain
        self._profile.cleanup()
