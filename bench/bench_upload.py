"""Benchmark: ``amly upload`` vs ``mapillary_tools upload`` (0.14.7), same files, same local
server build, same run; and the overlap of ``amly process-and-upload``.

    python bench/bench_upload.py compare [--sizes 1000,5000] [--latencies 0,50] [--runs 1]
    python bench/bench_upload.py overlap [--sizes 5000] [--latencies 0,50]
    python bench/bench_upload.py sweep   [--sizes 1000] [--latencies 0,50] [--concurrency 8,16,32,64,128]

Dataset: bench/gen_dataset.py (a drive in 5 subfolders, red-light stops and parking gaps:
10 sequences per size) at ``--size`` (default 640x360, ~80 KB JPEGs), described once by
``amly process`` (the official description file format, which both uploaders read).

Every run gets a fresh ``amly server`` process (its own data dir, so nothing is already
uploaded; ``--latency-ms`` injected per request) and a fresh journal / upload cache, and is
checked afterwards: the server must hold exactly the expected clusters and images.
``compare`` alternates the tools; ``overlap`` times ``amly process`` alone, ``amly upload``
alone (of the processed tree) and ``amly process-and-upload`` (of the raw tree);
``sweep`` times ``amly upload`` at several ``--concurrency`` values on uvloop and asyncio.
Peak memory is the client's whole process tree (summed RSS sampled every 25 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_process import measure_fresh, warm  # noqa: E402

TOKEN = "amly-bench-token-0123456789abcdef"
PY = sys.executable


def dataset(n: int, size: tuple[int, int]) -> Path:
    """The raw tree plus its description file (written by ``amly process`` once)."""
    from gen_dataset import generate

    data = generate(HERE / "data" / f"upload_{n}_{size[0]}x{size[1]}", n, size=size)
    desc = data / "mapillary_image_description.json"
    if not desc.exists():
        subprocess.run([PY, "-m", "amly", "process", str(data), "-q", "--no-progress"], check=False)
    return data


def expected(data: Path) -> tuple[int, int]:
    """(sequences, images) the description file says an upload must produce."""
    entries = json.loads((data / "mapillary_image_description.json").read_text())
    ok = [e for e in entries if "error" not in e]
    return len({e["MAPSequenceUUID"] for e in ok}), len(ok)


class Server:
    """A fresh ``amly server`` process over a temporary data dir."""

    def __init__(self, latency_ms: float) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="srv-", dir=HERE / "out"))
        cmd = [PY, "-m", "amly", "server", "--data", str(self.dir), "--port", "0"]
        cmd += ["--token", "-", "--latency-ms", str(latency_ms), "--json"]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(TOKEN + "\n")
        self.proc.stdin.close()
        info = json.loads(self.proc.stdout.readline())
        self.url = info["url"]

    def counts(self) -> tuple[int, int]:
        con = sqlite3.connect(self.dir / "amly-server.sqlite3")
        try:
            (c,) = con.execute("SELECT COUNT(*) FROM clusters").fetchone()
            (i,) = con.execute("SELECT COUNT(*) FROM images").fetchone()
        finally:
            con.close()
        return int(c), int(i)

    def cpu_seconds(self) -> float:
        """User + system CPU the server process has used so far (Linux /proc)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


def official_cmd(data: Path) -> list[str]:
    bindir = Path(PY).parent
    mt = [str(bindir / "mapillary_tools")] if (bindir / "mapillary_tools").exists() else [
        PY, "-m", "mapillary_tools.commands"
    ]  # fmt: skip
    return [*mt, "upload", str(data), "--user_name", "amly"]


def run_one(
    cmd: list[str], env: dict[str, str], latency: float, want: tuple[int, int] | None
) -> dict[str, Any]:
    """One measured run against a fresh server; checks what arrived."""
    srv = Server(latency)
    old = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update({k: v.replace("{URL}", srv.url) for k, v in env.items()})
        full = [c.replace("{URL}", srv.url) for c in cmd]
        cpu0 = srv.cpu_seconds()
        r = measure_fresh(full)
        r["server_cpu_s"] = srv.cpu_seconds() - cpu0
        os.environ.clear()
        os.environ.update(old)
        r["arrived"] = srv.counts()
        r["ok"] = r["rc"] == 0 and (want is None or r["arrived"] == want)
        return r
    finally:
        os.environ.clear()
        os.environ.update(old)
        srv.close()


def summarise(rs: list[dict[str, Any]], n: int) -> dict[str, Any]:
    secs = statistics.median(r["seconds"] for r in rs)
    return {
        "seconds": round(secs, 2),
        "images_per_s": round(n / secs, 1),
        "tree_rss_mb": round(max(r["tree_rss_kb"] for r in rs) / 1024, 1),
        "server_ms_per_img": round(statistics.median(r["server_cpu_s"] for r in rs) / n * 1000, 2),
        "ok": all(r["ok"] for r in rs),
        "arrived": rs[-1]["arrived"],
    }


def amly_upload_cmd(data: Path, *extra: str) -> list[str]:
    return [PY, "-m", "amly", "upload", str(data), "--endpoint", "{URL}", "-q", "--no-progress",
            *extra]  # fmt: skip


def compare(sizes: list[int], latencies: list[float], runs: int, size: tuple[int, int]) -> None:
    rows = []
    for n in sizes:
        data = dataset(n, size)
        warm(data)
        want = expected(data)
        for lat in latencies:
            res: dict[str, list[dict[str, Any]]] = {"amly": [], "mapillary_tools": []}
            for k in range(runs):
                with tempfile.TemporaryDirectory(dir=HERE / "out") as tmp:
                    home = Path(tmp)
                    res["amly"].append(run_one(amly_upload_cmd(data), env_amly(home), lat, want))
                    res["mapillary_tools"].append(
                        run_one(official_cmd(data), env_official(home / "mt"), lat, want)
                    )
                print(f"  n={n} latency={lat} run {k + 1}/{runs} done", file=sys.stderr)
            a, m = summarise(res["amly"], want[1]), summarise(res["mapillary_tools"], want[1])
            row = {"images": want[1], "sequences": want[0], "latency_ms": lat, "amly": a,
                   "mapillary_tools": m, "ratio": round(m["seconds"] / a["seconds"], 2)}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(compare_table(rows, size))


def env_amly(home: Path) -> dict[str, str]:
    """A fresh journal (AMLY_HOME) per run; the token from the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAPILLARY_")}
    env.update(AMLY_HOME=str(home / "amly"), MAPILLARY_ACCESS_TOKEN=TOKEN)
    return env


def env_official(home: Path) -> dict[str, str]:
    """The official tool as a user drives it: a profile in its config file, endpoints from
    the environment ({URL} is replaced by the run's server)."""
    config = home / "mapillary-config"
    home.mkdir(parents=True, exist_ok=True)
    config.write_text(f"[amly]\nuser_upload_token = {TOKEN}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAPILLARY_")}
    env.update(
        HOME=str(home),
        MAPILLARY_GRAPH_API_ENDPOINT="{URL}",
        MAPILLARY_UPLOAD_ENDPOINT="{URL}/upload",
        MAPILLARY_CONFIG_PATH=str(config),
        MAPILLARY_UPLOAD_HISTORY_PATH=str(home / "history"),
        MAPILLARY_TOOLS_UPLOAD_CACHE_DIR=str(home / "cache"),
        MAPILLARY_TOOLS_PROMPT_DISABLED="YES",
    )
    return env


def compare_table(rows: list[dict[str, Any]], size: tuple[int, int]) -> str:
    lines = [
        f"JPEG size {size[0]}x{size[1]}",
        "",
        "| images (sequences) | latency | amly s | amly img/s | mapillary_tools s "
        "| mapillary_tools img/s | ratio | amly RSS MB | mapillary_tools RSS MB "
        "| server CPU ms/img (amly / mt) | checked |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        a, m = r["amly"], r["mapillary_tools"]
        ok = "ok" if a["ok"] and m["ok"] else f"FAILED {a['arrived']} {m['arrived']}"
        lines.append(
            f"| {r['images']:,} ({r['sequences']}) | {r['latency_ms']:g} ms | {a['seconds']} "
            f"| {a['images_per_s']:,.0f} | {m['seconds']} | {m['images_per_s']:,.0f} "
            f"| **{r['ratio']}x** | {a['tree_rss_mb']} | {m['tree_rss_mb']} "
            f"| {a['server_ms_per_img']} / {m['server_ms_per_img']} | {ok} |"
        )
    return "\n".join(lines)


def overlap(sizes: list[int], latencies: list[float], runs: int, size: tuple[int, int]) -> None:
    rows = []
    for n in sizes:
        data = dataset(n, size)
        warm(data)
        want = expected(data)
        out = HERE / "out"
        for lat in latencies:
            res: dict[str, list[dict[str, Any]]] = {"process": [], "upload": [], "both": []}
            for _ in range(runs):
                with tempfile.TemporaryDirectory(dir=out) as tmp:
                    home = Path(tmp)
                    proc_cmd = [PY, "-m", "amly", "process", str(data), "--desc-path",
                                str(home / "desc.json"), "-q", "--no-progress"]  # fmt: skip
                    res["process"].append(measure_fresh(proc_cmd))
                    res["upload"].append(
                        run_one(amly_upload_cmd(data), env_amly(home / "u"), lat, want)
                    )
                    both = [PY, "-m", "amly", "process-and-upload", str(data), "--endpoint",
                            "{URL}", "-q", "--no-progress"]  # fmt: skip
                    res["both"].append(run_one(both, env_amly(home / "b"), lat, want))
            p = {"seconds": round(statistics.median(r["seconds"] for r in res["process"]), 2),
                 "tree_rss_mb": round(max(r["tree_rss_kb"] for r in res["process"]) / 1024, 1)}  # fmt: skip
            u, b = summarise(res["upload"], want[1]), summarise(res["both"], want[1])
            slower = max(p["seconds"], u["seconds"])
            row = {"images": want[1], "latency_ms": lat, "process": p, "upload": u, "both": b,
                   "ratio": round(b["seconds"] / slower, 2)}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
    lines = [
        f"JPEG size {size[0]}x{size[1]}",
        "",
        "| images | latency | process s | upload s | process-and-upload s "
        "| ÷ slower of the two | process-and-upload RSS MB | checked |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ok = "ok" if r["upload"]["ok"] and r["both"]["ok"] else "FAILED"
        lines.append(
            f"| {r['images']:,} | {r['latency_ms']:g} ms | {r['process']['seconds']} "
            f"| {r['upload']['seconds']} | {r['both']['seconds']} | **{r['ratio']}x** "
            f"| {r['both']['tree_rss_mb']} | {ok} |"
        )
    print("\n".join(lines))


def sweep(sizes: list[int], latencies: list[float], conc: list[int], size: tuple[int, int]) -> None:
    lines = [
        "| images | latency | concurrency | uvloop img/s | asyncio img/s | uvloop RSS MB |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for n in sizes:
        data = dataset(n, size)
        warm(data)
        want = expected(data)
        for lat in latencies:
            for c in conc:
                got = {}
                for loop in ("uvloop", "asyncio"):
                    with tempfile.TemporaryDirectory(dir=HERE / "out") as tmp:
                        env = env_amly(Path(tmp))
                        env["AMLY_LOOP"] = loop
                        cmd = amly_upload_cmd(data, "--concurrency", str(c))
                        got[loop] = summarise([run_one(cmd, env, lat, want)], want[1])
                u, a = got["uvloop"], got["asyncio"]
                line = (f"| {want[1]:,} | {lat:g} ms | {c} | {u['images_per_s']:,.0f} "
                        f"| {a['images_per_s']:,.0f} | {u['tree_rss_mb']} |")  # fmt: skip
                if not (u["ok"] and a["ok"]):
                    line += " FAILED"
                lines.append(line)
                print(line, file=sys.stderr, flush=True)
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("mode", choices=["compare", "overlap", "sweep"])
    p.add_argument("--sizes", default="1000,5000", help="image counts")
    p.add_argument("--latencies", default="0,50", help="injected server latency, ms")
    p.add_argument("--runs", type=int, default=1, help="runs per cell (median)")
    p.add_argument("--size", default="640x360", help="JPEG WxH [640x360]")
    p.add_argument("--concurrency", default="8,16,32,64,128", help="sweep values")
    args = p.parse_args(argv)
    (HERE / "out").mkdir(exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    lats = [float(s) for s in args.latencies.split(",")]
    w, h = (int(x) for x in args.size.lower().split("x"))
    if args.mode == "compare":
        compare(sizes, lats, args.runs, (w, h))
    elif args.mode == "overlap":
        overlap(sizes, lats, args.runs, (w, h))
    else:
        sweep(sizes, lats, [int(c) for c in args.concurrency.split(",")], (w, h))
    return 0


if __name__ == "__main__":
    sys.exit(main())
