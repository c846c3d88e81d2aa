"""Benchmark: ``amly upload --to panoramax`` vs the official ``panoramax_cli upload`` (1.4.1),
the same photos, a fresh real Panoramax (geovisio 2.15.1, tests/panoramax_support.py) per run,
in the same run, timed until every upload set is ready (both tools with ``--wait``).

    python bench/bench_panoramax.py [--folders 4] [--per-folder 32] [--latencies 0,200] [--runs 3]

Configurations: amly at its defaults; panoramax-cli at its default (one picture at a time) and
at ``--parallel-uploads 8``. Latency: a small TCP proxy of this file in front of the server
delays every chunk by half the round trip in each direction (a remote instance; bandwidth is
not limited). Every run is checked afterwards: the server must list every photo, prepared.
Peak memory is the client's whole process tree (summed RSS sampled every 25 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

import panoramax_support as ps  # noqa: E402
from bench_process import measure_fresh, warm  # noqa: E402

PY = sys.executable


def dataset(folders: int, per_folder: int, size: tuple[int, int]) -> Path:
    """``folders`` drives of ``per_folder`` geotagged photos each, far apart (one sequence
    each), written once under bench/data/."""
    from amly import synth

    out = HERE / "data" / f"panoramax_{folders}x{per_folder}_{size[0]}x{size[1]}"
    if out.exists() and len(list(out.rglob("*.jpg"))) == folders * per_folder:
        return out
    for i in range(folders):
        plan = synth.DrivePlan(
            n=per_folder,
            seed=i + 1,
            start_lat=48.0 + i * 0.3,
            start_lon=2.0,
            start=datetime(2024, 6, 1, 10, tzinfo=timezone.utc) + timedelta(hours=i),
        )
        synth.write_photos(out / f"seq{i}", synth.drive(plan), size=size)
    return out


class LatencyProxy:
    """127.0.0.1:port -> target, each chunk forwarded ``delay`` seconds after it arrived (in
    order, per direction), on its own event loop thread."""

    def __init__(self, target_port: int, rtt_ms: float) -> None:
        self.target_port = target_port
        self.delay = rtt_ms / 2000.0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LatencyProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _client(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            sr, sw = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            cw.close()
            return
        await asyncio.gather(self._pump(cr, sw), self._pump(sr, cw), return_exceptions=True)

    async def _pump(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def writer() -> None:
            while True:
                due, chunk = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not chunk:
                    w.close()
                    return
                w.write(chunk)
                await w.drain()

        task = asyncio.ensure_future(writer())
        try:
            while True:
                chunk = await r.read(1 << 16)
                queue.put_nowait((loop.time() + self.delay, chunk))
                if not chunk:
                    break
            await task
        finally:
            task.cancel()


def commands(tool: str, data: Path, url: str, token: str, home: Path) -> list[str]:
    env = ["env", f"HOME={home}", f"AMLY_HOME={home}", f"PANORAMAX_TOKEN={token}", "COLUMNS=120"]
    if tool == "amly":
        return [*env, PY, "-m", "amly", "upload", str(data), "--subfolders", "--to",
                "panoramax", "--api-url", url, "--wait", "-q", "--no-progress"]  # fmt: skip
    cli = [str(ps.PANORAMAX_CLI_VENV / "bin" / "panoramax_cli"), "upload", str(data),
           "--api-url", url, "--token", token, "--wait"]  # fmt: skip
    if tool == "panoramax-cli -p8":
        cli += ["--parallel-uploads", "8"]
    return [*env, *cli]


def check(srv: ps.PanoramaxServer, n: int) -> None:
    found = srv.get(f"/api/search?limit={max(n, 10) + 10}")
    got = len(found["features"]) if isinstance(found, dict) else -1
    if got != n:
        raise SystemExit(f"the server lists {got} prepared pictures, not {n}")


TOOLS = ["amly", "panoramax-cli", "panoramax-cli -p8"]


def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    size = tuple(int(x) for x in args.size.split("x"))
    data = dataset(args.folders, args.per_folder, size)  # type: ignore[arg-type]
    n = args.folders * args.per_folder
    warm(data)
    rows = []
    with ps.cluster() as c:
        for lat in [float(x) for x in args.latencies.split(",")]:
            times: dict[str, list[float]] = {t: [] for t in TOOLS}
            rss: dict[str, list[int]] = {t: [] for t in TOOLS}
            for r in range(args.runs):
                for tool in TOOLS if r % 2 == 0 else TOOLS[::-1]:
                    # panoramax-cli keeps its resume state in the photo folders: a fresh server
                    # must not meet the set ids of an earlier run
                    for state in data.rglob("_panoramax.txt"):
                        state.unlink()
                    with ps.server(c, auth=True) as srv, LatencyProxy(srv.port, lat) as proxy:
                        url = f"http://127.0.0.1:{proxy.port}"
                        home = Path(tempfile.mkdtemp(prefix="pmx-bench-"))
                        log = home / "tool.log"
                        cmd = commands(tool, data, url, srv.token, home)
                        # in the temporary home: panoramax-cli writes trace files into its cwd
                        m = measure_fresh(
                            [
                                "sh",
                                "-c",
                                'cd "$1" && shift && exec "$@" >"$0" 2>&1',
                                str(log),
                                str(home),
                                *cmd,
                            ]  # fmt: skip
                        )
                        if m["rc"] != 0:
                            raise SystemExit(
                                f"{tool} failed (exit {m['rc']}) at {lat} ms:\n"
                                + log.read_text(errors="replace")[-3000:]
                            )
                        check(srv, n)
                        times[tool].append(m["seconds"])
                        rss[tool].append(m["tree_rss_kb"])
                        print(f"  {lat:.0f} ms {tool}: {m['seconds']:.2f}s", file=sys.stderr)
            med = {t: statistics.median(times[t]) for t in TOOLS}
            rows.append(
                {
                    "images": n,
                    "latency_ms": lat,
                    "runs": args.runs,
                    **{f"{t} s": round(med[t], 2) for t in TOOLS},
                    **{f"{t} MB": round(max(rss[t]) / 1024, 1) for t in TOOLS},
                    "vs default": round(med["panoramax-cli"] / med["amly"], 2),
                    "vs -p8": round(med["panoramax-cli -p8"] / med["amly"], 2),
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| images | RTT ms | amly s | panoramax-cli s | panoramax-cli -p8 s | amly vs default "
        "| amly vs -p8 | peak RSS MB amly / cli / cli -p8 |\n|---:|---:|---:|---:|---:|---:|---:|---|"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['images']} | {r['latency_ms']:.0f} | {r['amly s']} | {r['panoramax-cli s']} "
            f"| {r['panoramax-cli -p8 s']} | **{r['vs default']}x** | **{r['vs -p8']}x** "
            f"| {r['amly MB']} / {r['panoramax-cli MB']} / {r['panoramax-cli -p8 MB']} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--folders", type=int, default=4)
    p.add_argument("--per-folder", type=int, default=32)
    p.add_argument("--size", default="1920x1080")
    p.add_argument("--latencies", default="0,200")
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    why = ps.missing()
    if why:
        raise SystemExit(why)
    t0 = time.monotonic()
    rows = bench(args)
    print(table(rows))
    print(f"(bench took {time.monotonic() - t0:.0f}s; {os.cpu_count()} cpus)")


if __name__ == "__main__":
    main()
