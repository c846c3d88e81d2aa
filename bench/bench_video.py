"""Video benchmarks: amly against mapillary_tools 0.14.7, in the same run, on the same files.

``extract``: the telemetry of a folder of generated videos (GoPro GPS5 at 18 Hz, GoPro GPS9
at 10 Hz, CAMM type 6 at 10 Hz, BlackVue NMEA at 1 Hz; 30 fps video tracks, so both tools
also walk realistic sample tables) read by ``amly.video.read_video_sync`` and by the official
``NativeVideoExtractor`` (its parsers, noise filter included). Each run is a fresh process
(the two tools alternating); the time is measured inside it (imports excluded), the peak
RSS is the child's ``ru_maxrss``. The ratio is of the medians.

``rebuild``: peak RSS and throughput of producing the CAMM rebuild of one multi-GB generated
video (streamed to /dev/null), amly against the official ``transform_mp4``.

``process``: ``amly process DIR --filetypes video`` against ``mapillary_tools process DIR
--filetypes gopro,camm,blackvue`` on the extract folder: whole commands (interpreter start
included), fresh processes, alternating, median; peak RSS of each tool's process tree.

``upload``: one generated multi-GB GoPro video with its description file (amly's entry),
uploaded by ``amly upload`` and by ``mapillary_tools upload`` to a fresh local server with
``--latency-ms`` per request; seconds, MB/s and the client's peak process-tree RSS. The
server must hold one ``mly_camm_video`` cluster afterwards.

    python bench/bench_video.py extract --videos 60 --minutes 5 --runs 3
    python bench/bench_video.py process --videos 60 --minutes 5 --runs 3
    python bench/bench_video.py rebuild --gb 3
    python bench/bench_video.py upload --gb 3 --latency 50 --runs 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "video"

_CHILD = r"""
import json, os, resource, sys, time
from pathlib import Path
tool, folder = sys.argv[1], sys.argv[2]
files = sorted(str(p) for p in Path(folder).iterdir() if p.suffix == ".mp4")
if tool == "amly":
    from amly.video import read_video_sync
    def one(p):
        return len(read_video_sync(p).points)
else:
    from mapillary_tools.geotag.video_extractors.native import NativeVideoExtractor
    def one(p):
        return len(NativeVideoExtractor(Path(p)).extract().points)
t = time.perf_counter()
points = sum(one(p) for p in files)
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "points": points, "files": len(files),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def generate(n: int, minutes: float) -> Path:
    from amly.video import _build as B

    folder = DATA / f"extract-{n}-{minutes:g}"
    done = folder / ".done"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    secs = minutes * 60
    base = B.Base(seconds=secs, fps=30, frame_size=256, width=1920, height=1080)
    for i in range(n):
        kind = i % 4
        lat = 40.0 + i * 0.01
        if kind == 0:
            pts = B.straight_track(secs, 18, lat=lat)
            B.build_gopro(folder / f"v{i:03d}_gopro5.mp4", pts, base=base)
        elif kind == 1:
            pts = B.straight_track(secs, 10, lat=lat)
            B.build_gopro(folder / f"v{i:03d}_gopro9.mp4", pts, base=base, gps9=True, gps5=False)
        elif kind == 2:
            pts = B.straight_track(secs, 10, lat=lat)
            B.build_camm(
                folder / f"v{i:03d}_camm.mp4", pts, base=base, make="RICOH", model="THETA X"
            )
        else:
            pts = B.straight_track(secs, 1, lat=lat)
            B.build_blackvue(folder / f"v{i:03d}_blackvue.mp4", pts, base=base)
    done.touch()
    return folder


def child(tool: str, folder: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, tool, str(folder)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_extract(args: argparse.Namespace) -> None:
    folder = generate(args.videos, args.minutes)
    for tool in ("amly", "mapillary_tools"):  # warm the page cache
        child(tool, folder)
    res: dict[str, list[dict]] = {"amly": [], "mapillary_tools": []}
    for _ in range(args.runs):
        for tool in ("amly", "mapillary_tools"):
            res[tool].append(child(tool, folder))
    a = statistics.median(r["seconds"] for r in res["amly"])
    m = statistics.median(r["seconds"] for r in res["mapillary_tools"])
    pa, pm = res["amly"][0]["points"], res["mapillary_tools"][0]["points"]
    files = res["amly"][0]["files"]
    ra = max(r["rss_mb"] for r in res["amly"])
    rm = max(r["rss_mb"] for r in res["mapillary_tools"])
    print(
        "| videos | minutes each | points (amly / official) | amly s | official s | ratio | amly RSS MB | official RSS MB |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {files} | {args.minutes:g} | {pa} / {pm} | {a:.3f} | {m:.3f} | **{m / a:.2f}x** | {ra:.1f} | {rm:.1f} |"
    )


_REBUILD = r"""
import json, resource, sys, time
src, tool = sys.argv[1], sys.argv[2]
from amly.video import read_video_sync
track = read_video_sync(src)
t = time.perf_counter()
n = 0
if tool == "amly":
    from amly.video import camm_layout
    layout = camm_layout(src, track.points, track.make, track.model)
    for b in layout.iter_bytes():
        n += len(b)
else:
    from pathlib import Path
    from mapillary_tools.uploader import VideoUploader
    from mapillary_tools.geotag.video_extractors.native import NativeVideoExtractor
    vm = NativeVideoExtractor(Path(src)).extract()
    with VideoUploader.build_camm_stream(vm) as fp:
        while True:
            b = fp.read(1 << 20)
            if not b:
                break
            n += len(b)
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "bytes": n, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def bench_rebuild(args: argparse.Namespace) -> None:
    from amly.video import _build as B

    DATA.mkdir(parents=True, exist_ok=True)
    src = DATA / f"big-{args.gb:g}gb.mp4"
    if not src.exists():
        secs = 600.0
        frame = int(args.gb * 1e9 / (secs * 30))
        B.build_gopro(
            src, B.straight_track(secs, 18), base=B.Base(seconds=secs, fps=30, frame_size=frame)
        )
    print("| tool | input GB | output GB | seconds | MB/s | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for tool in ("amly", "mapillary_tools"):
        runs = []
        for _ in range(args.runs):
            out = subprocess.run(
                [sys.executable, "-c", _REBUILD, str(src), tool],
                capture_output=True,
                text=True,
                check=True,
            )
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        s = statistics.median(r["seconds"] for r in runs)
        b = runs[0]["bytes"]
        rss = max(r["rss_mb"] for r in runs)
        print(
            f"| {tool} | {src.stat().st_size / 1e9:.2f} | {b / 1e9:.2f} | {s:.2f} | {b / 1e6 / s:,.0f} | {rss:.1f} |"
        )


def _process_cmds(folder: Path, out: Path) -> dict[str, list[str]]:
    py = sys.executable
    am = [py, "-m", "amly", "process", str(folder), "--filetypes", "video",
          "--desc-path", str(out / "amly-video.json"), "-q", "--no-progress"]  # fmt: skip
    mt = [py, "-m", "mapillary_tools.commands", "process", str(folder), "--filetypes",
          "gopro,camm,blackvue", "--desc_path", str(out / "mt-video.json")]  # fmt: skip
    return {"amly": am, "mapillary_tools": mt}


def bench_process(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(HERE))
    from bench_process import measure_fresh

    folder = generate(args.videos, args.minutes)
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    cmds = _process_cmds(folder, out)
    res: dict[str, list[dict]] = {k: [] for k in cmds}
    for _ in range(args.runs):
        for name, cmd in cmds.items():
            res[name].append(measure_fresh(cmd))
    ok = {
        name: len([e for e in json.loads((out / f).read_text()) if "error" not in e])
        for name, f in (("amly", "amly-video.json"), ("mapillary_tools", "mt-video.json"))
    }
    a = statistics.median(r["seconds"] for r in res["amly"])
    m = statistics.median(r["seconds"] for r in res["mapillary_tools"])
    ra = max(r["tree_rss_kb"] for r in res["amly"]) / 1024
    rm = max(r["tree_rss_kb"] for r in res["mapillary_tools"]) / 1024
    print(
        "| videos | described (amly / official) | amly s | official s | ratio | amly tree RSS MB | official tree RSS MB |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {args.videos} | {ok['amly']} / {ok['mapillary_tools']} | {a:.3f} | {m:.3f} | **{m / a:.2f}x** | {ra:.1f} | {rm:.1f} |"
    )


def bench_upload(args: argparse.Namespace) -> None:
    import tempfile

    sys.path.insert(0, str(HERE))
    from bench_process import measure_fresh
    from bench_upload import Server, env_amly, env_official, official_cmd

    from amly.description import write_file
    from amly.video import _build as B
    from amly.video import read_video_sync
    from amly.video._describe import video_entry

    folder = DATA / f"upload-{args.gb:g}gb"
    src = folder / "gopro.mp4"
    if not src.exists():
        folder.mkdir(parents=True, exist_ok=True)
        secs = 600.0
        frame = int(args.gb * 1e9 / (secs * 30))
        B.build_gopro(
            src, B.straight_track(secs, 18), base=B.Base(seconds=secs, fps=30, frame_size=frame)
        )
        write_file(folder / "mapillary_image_description.json", [video_entry(read_video_sync(src))])
    with open(src, "rb") as f:  # warm the page cache
        while f.read(1 << 24):
            pass
    (HERE / "out").mkdir(exist_ok=True)
    size = src.stat().st_size
    print("| tool | video GB | latency ms | seconds | MB/s | client tree RSS MB | clusters |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for _ in range(args.runs):
        for tool in ("amly", "mapillary_tools"):
            with tempfile.TemporaryDirectory(dir=HERE / "out") as tmp:
                home = Path(tmp)
                srv = Server(args.latency)
                try:
                    if tool == "amly":
                        cmd = [
                            sys.executable,
                            "-m",
                            "amly",
                            "upload",
                            str(folder),
                            "--endpoint",
                            srv.url,
                            "-q",
                            "--no-progress",
                        ]
                        env = env_amly(home)
                    else:
                        cmd = official_cmd(folder)
                        env = {
                            k: v.replace("{URL}", srv.url)
                            for k, v in env_official(home / "mt").items()
                        }
                    old = dict(os.environ)
                    os.environ.clear()
                    os.environ.update(env)
                    try:
                        r = measure_fresh(cmd)
                    finally:
                        os.environ.clear()
                        os.environ.update(old)
                    clusters, _images = srv.counts()
                finally:
                    srv.close()
            s = r["seconds"]
            print(
                f"| {tool} | {size / 1e9:.2f} | {args.latency:g} | {s:.1f} | {size / 1e6 / s:,.0f} | {r['tree_rss_kb'] / 1024:.1f} | {clusters} (rc {r['rc']}) |",
                flush=True,
            )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="mode", required=True)
    e = sub.add_parser("extract")
    e.add_argument("--videos", type=int, default=60)
    e.add_argument("--minutes", type=float, default=5.0)
    e.add_argument("--runs", type=int, default=3)
    r = sub.add_parser("rebuild")
    r.add_argument("--gb", type=float, default=3.0)
    r.add_argument("--runs", type=int, default=1)
    q = sub.add_parser("process")
    q.add_argument("--videos", type=int, default=60)
    q.add_argument("--minutes", type=float, default=5.0)
    q.add_argument("--runs", type=int, default=3)
    u = sub.add_parser("upload")
    u.add_argument("--gb", type=float, default=3.0)
    u.add_argument("--latency", type=float, default=50.0)
    u.add_argument("--runs", type=int, default=1)
    args = p.parse_args()
    t = time.time()
    modes = {"extract": bench_extract, "rebuild": bench_rebuild, "process": bench_process,
             "upload": bench_upload}  # fmt: skip
    modes[args.mode](args)
    print(
        f"({time.time() - t:.0f} s, rss of this driver {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB, pid {os.getpid()})",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
