"""Run the local server in a background thread, for tests, benchmarks and the demo.

>>> import tempfile, urllib.request, json
>>> with tempfile.TemporaryDirectory() as d, running_server(d) as srv:
...     req = urllib.request.Request(srv.url + "/me?fields=id,username",
...                                  headers={"Authorization": "OAuth " + srv.token})
...     json.load(urllib.request.urlopen(req))["username"]
'amly-user'
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from ..config import Endpoints
from .app import TOKEN_KEY, create_app
from .faults import Faults, Stats
from .store import Store

T = TypeVar("T")


@dataclasses.dataclass
class RunningServer:
    """A server running on 127.0.0.1. ``faults`` and ``stats`` are the live objects."""

    url: str
    token: str
    store_dir: Path
    faults: Faults
    stats: Stats
    app: web.Application
    loop: asyncio.AbstractEventLoop

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints.local(self.url)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the server's loop (e.g. to touch its Store)."""

        async def run() -> T:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result()


async def serve(
    app: web.Application, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, str]:
    """Start ``app``; returns the runner (``await runner.cleanup()`` stops it) and base URL."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    addr = runner.addresses[0]
    host_s = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
    return runner, f"http://{host_s}:{addr[1]}"


@contextlib.contextmanager
def running_server(
    data_dir: str | os.PathLike[str],
    *,
    token: str | None = None,
    faults: Faults | None = None,
) -> Iterator[RunningServer]:
    """The server over ``data_dir`` on 127.0.0.1 (a free port) in a thread with its own loop.

    Usable from sync and async tests alike (the server never shares the caller's loop).
    Stops cleanly on exit.
    """
    loop = asyncio.new_event_loop()
    started = threading.Event()
    state: dict[str, object] = {}

    async def start() -> None:
        store = Store(data_dir)
        app = create_app(store, token=token, faults=faults)
        runner, url = await serve(app)
        state.update(store=store, app=app, runner=runner, url=url)

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as e:  # reported to the caller
            state["error"] = e
            started.set()
            return
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="amly-server", daemon=True)
    thread.start()
    started.wait()
    if "error" in state:
        thread.join()
        loop.close()
        raise state["error"]  # type: ignore[misc]
    app: web.Application = state["app"]  # type: ignore[assignment]
    store: Store = state["store"]  # type: ignore[assignment]
    from .faults import FAULTS_KEY, STATS_KEY

    srv = RunningServer(
        url=str(state["url"]),
        token=app[TOKEN_KEY],
        store_dir=Path(data_dir),
        faults=app[FAULTS_KEY],
        stats=app[STATS_KEY],
        app=app,
        loop=loop,
    )
    try:
        yield srv
    finally:

        async def stop() -> None:
            await state["runner"].cleanup()  # type: ignore[attr-defined]
            store.close()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
