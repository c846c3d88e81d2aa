"""Headless Debian Chromium driven over the DevTools protocol (a websocket, aiohttp's client).

Why not playwright: it pins its own browser build and downloads it, and its Python package
pulls a Node driver; the Debian ``chromium`` that CI installs speaks the same protocol, and
aiohttp is already a dependency. This module is the whole driver: launch, navigate, evaluate,
click, screenshot.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
]


def available() -> bool:
    return os.path.exists(CHROMIUM)


class Chromium:
    """``async with Chromium() as page:`` a fresh browser (own profile) with one page."""

    def __init__(
        self,
        width: int = 1400,
        height: int = 900,
        *,
        offline: bool = False,
        flags: list[str] | None = None,
    ) -> None:
        self.width, self.height, self.offline = width, height, offline
        self.flags = flags or []
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._events: dict[str, list[asyncio.Future[Any]]] = {}
        self._profile = tempfile.mkdtemp(prefix="amly-chromium-")
        self._proc: asyncio.subprocess.Process | None = None
        #: Uncaught exceptions of the page's scripts (``Runtime.exceptionThrown``).
        self.errors: list[str] = []

    async def __aenter__(self) -> Chromium:
        args = [
            CHROMIUM,
            *FLAGS,
            *self.flags,
            f"--user-data-dir={self._profile}",
            "--remote-debugging-port=0",
            f"--window-size={self.width},{self.height}",
            "about:blank",
        ]
        self._proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self._proc.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit {self._proc.returncode})")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().splitlines()[0])
        self._http = aiohttp.ClientSession()
        async with self._http.get(f"http://127.0.0.1:{port}/json/list") as r:
            targets = await r.json(content_type=None)
        page = next(t for t in targets if t.get("type") == "page")
        self._ws = await self._http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        await self.send("Page.enable")
        await self.send("Runtime.enable")
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=self.width,
            height=self.height,
            deviceScaleFactor=1,
            mobile=False,
        )
        if self.offline:
            await self.send("Network.enable")
            await self.send(
                "Network.emulateNetworkConditions",
                offline=True,
                latency=0,
                downloadThroughput=-1,
                uploadThroughput=-1,
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._reader.cancel()
        await self._ws.close()
        await self._http.close()
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            try:
                await asyncio.wait_for(self._proc.wait(), 10)
            except asyncio.TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        shutil.rmtree(self._profile, ignore_errors=True)

    async def _read(self) -> None:
        async for msg in self._ws:
            data = json.loads(msg.data)
            if "id" in data:
                fut = self._pending.pop(data["id"], None)
                if fut is not None and not fut.done():
                    if "error" in data:
                        fut.set_exception(RuntimeError(f"CDP error: {data['error']}"))
                    else:
                        fut.set_result(data.get("result", {}))
            else:
                if data.get("method") == "Runtime.exceptionThrown":
                    details = data["params"]["exceptionDetails"]
                    self.errors.append(
                        details.get("exception", {}).get("description") or details.get("text", "")
                    )
                for fut in self._events.pop(data.get("method", ""), []):
                    if not fut.done():
                        fut.set_result(data.get("params", {}))

    async def send(self, method: str, **params: Any) -> Any:
        i = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[i] = fut
        await self._ws.send_str(json.dumps({"id": i, "method": method, "params": params}))
        return await asyncio.wait_for(fut, 120)

    def event(self, method: str) -> asyncio.Future[Any]:
        """A future for the next ``method`` event (ask before triggering it)."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._events.setdefault(method, []).append(fut)
        return fut

    async def open(self, url: str) -> None:
        loaded = self.event("Page.loadEventFired")
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(loaded, 120)

    async def evaluate(self, expression: str) -> Any:
        r = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in r:
            raise RuntimeError(f"page error: {r['exceptionDetails']}")
        return r["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"page never satisfied {expression!r}")
            await asyncio.sleep(0.02)

    async def click(self, x: float, y: float) -> None:
        for kind, extra in (
            ("mouseMoved", {}),
            ("mousePressed", {"button": "left", "clickCount": 1, "buttons": 1}),
            ("mouseReleased", {"button": "left", "clickCount": 1}),
        ):
            await self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, **extra)

    async def screenshot(self, path: str | os.PathLike[str] | None = None) -> bytes:
        r = await self.send("Page.captureScreenshot", format="png")
        png = base64.b64decode(r["data"])
        if path is not None:
            await asyncio.to_thread(Path(path).write_bytes, png)
        return png
