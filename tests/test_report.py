"""``amly report``: the page opened in headless Chromium (screenshots asserted on and kept
under ``artifacts/report/``), the PNG snapshot, the inputs (process, download, upload), bad
input."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from _chromium import Chromium, available
from _process_helpers import add_bad_files, amly, drive, write_drive
from PIL import Image

from amly.report._data import kind_of
from amly.types import Point

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "report"
BACKGROUND = (238, 240, 234)

needs_chromium = pytest.mark.skipif(
    not available() and not os.environ.get("CI"),
    reason="Debian chromium is not installed (.ci/run installs it)",
)


def keep(png: bytes, name: str) -> Path:
    """Keep a screenshot as a test artifact and say where."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    path.write_bytes(png)
    print(f"screenshot: {path}")
    return path


def short(seq_id: str) -> str:
    """The legend's short form of a sequence id (as report.js writes it)."""
    return seq_id if len(seq_id) <= 14 else seq_id[:8] + "\u2026" + seq_id[-4:]


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A processed drive: two sequences (a parking gap), duplicates (a red-light stop), a GPS
    jump, four broken files."""
    folder = tmp_path_factory.mktemp("report") / "trip"
    pts = drive(90)
    p = pts[70]
    pts[70] = Point(p.time, p.lat + 0.05, p.lon, p.alt, p.heading)  # 5.5 km away for 1 s
    write_drive(folder, pts)
    add_bad_files(folder)
    out = amly("process", folder)
    assert out.returncode == 1, out.stderr  # the broken files
    return folder


def description(folder: Path) -> list[dict[str, Any]]:
    return json.loads((folder / "mapillary_image_description.json").read_text())


def sequence_ids(folder: Path) -> list[str]:
    return sorted({e["MAPSequenceUUID"] for e in description(folder) if "error" not in e})


def colours_present(img: Image.Image, colours: list[str], tol: int = 12) -> dict[str, int]:
    """How many pixels of ``img`` have each colour (within ``tol`` per channel)."""
    hist = img.convert("RGB").getcolors(maxcolors=1 << 24) or []
    counts = dict.fromkeys(colours, 0)
    for c in colours:
        t = tuple(int(c[i : i + 2], 16) for i in (1, 3, 5))
        counts[c] = sum(n for n, px in hist if all(abs(px[k] - t[k]) <= tol for k in range(3)))
    return counts


def blank(img: Image.Image) -> bool:
    """Whether ``img`` is (almost) only the map's background colour."""
    hist = img.convert("RGB").getcolors(maxcolors=1 << 24) or []
    return sum(n for n, px in hist if px != BACKGROUND) < 2000


def page_data(html: Path) -> dict[str, Any]:
    """The data a report page embeds."""
    found = re.search(r'id="amly-data">(.*?)</script>', html.read_text(), re.S)
    assert found, f"{html} embeds no data"
    return json.loads(found.group(1))


def report(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    return amly("report", *args)


# -- the CLI, the file, the PNG ----------------------------------------------------------------


def test_report_is_one_self_contained_file_and_a_png(processed: Path, tmp_path: Path) -> None:
    html, png = tmp_path / "r.html", tmp_path / "r.png"
    out = report(processed, "-o", html, "--png", png, "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["counts"] == {"description": 1, "photos": 94, "sequences": 2}
    assert summary["html_bytes"] == html.stat().st_size
    text = html.read_text()
    # Nothing is fetched at view time but the optional basemap tiles.
    assert re.findall(r"<script[^>]*>", text) == [
        '<script type="application/json" id="amly-data">',
        "<script>",
    ]
    assert "<link" not in text
    assert re.findall(r"(?:src|href)=\"?(?:https?:)?//[^\"]*", text) == [
        'href="https://www.openstreetmap.org/copyright'
    ]
    assert set(re.findall(r"https?://[\w.-]+", text)) <= {
        "https://tile.openstreetmap.org",
        "https://www.openstreetmap.org",
    }
    doc = json.loads(
        re.search(r'id="amly-data">(.*?)</script>', text, re.S).group(1)  # type: ignore[union-attr]
    )
    types = Counter(e["error"]["type"] for e in description(processed) if "error" in e)
    assert doc["summary"]["errors"] == dict(types)
    assert doc["summary"]["duplicates"] == types["MapillaryDuplicationError"] > 0
    assert doc["summary"]["gps"] == 1  # the jump
    assert doc["summary"]["failed"] == 4
    assert len(doc["unlocated"]) == 4  # the broken files have no position
    assert [s["id"] for s in doc["seqs"]] and len(doc["gaps"]) == 1
    assert doc["gaps"][0]["s"] > 600  # the parking gap cut the drive
    img = Image.open(png)
    assert img.size == (1200, 800)
    colours = [s["color"] for s in doc["seqs"]]
    counts = colours_present(img.crop((300, 0, 1200, 800)), colours)
    assert all(n > 50 for n in counts.values()), counts


def test_bad_inputs_get_a_clear_message(processed: Path, tmp_path: Path) -> None:
    missing = report(tmp_path / "nope", "-o", tmp_path / "a.html")
    assert missing.returncode == 2
    assert "no such file" in missing.stderr and "Traceback" not in missing.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = report(empty, "-o", tmp_path / "a.html")
    assert r.returncode == 2 and f"amly process {empty}" in r.stderr, r.stderr
    assert not (tmp_path / "a.html").exists()
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"\x00\xff{not json")
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    r = report(processed, garbage, other, "-o", tmp_path / "b.html", "--json")
    assert r.returncode == 1, r.stderr
    fails = json.loads(r.stdout)["failures"]
    assert [f["file"] for f in fails] == [str(garbage), str(other)]
    assert "not JSON" in fails[0]["error"] and "not a description file" in fails[1]["error"]
    assert (tmp_path / "b.html").stat().st_size > 0
    assert "Traceback" not in r.stderr
    r = report(processed, "-o", tmp_path / "no" / "such" / "dir" / "r.html")
    assert r.returncode == 2 and "cannot write" in r.stderr and "Traceback" not in r.stderr


def test_official_description_file_is_read() -> None:
    assert kind_of([{"filename": "a.jpg", "error": {"type": "x"}}]) == "description"


# -- in Chromium --------------------------------------------------------------------------------


async def _inspect(html: Path, shot: str, *, offline: bool, flags: list[str]) -> dict[str, Any]:
    async with Chromium(offline=offline, flags=flags) as page:
        await page.open(html.as_uri())
        await page.wait_for("window.amlyReport && window.amlyReport.ready")
        got: dict[str, Any] = {}
        got["rect"] = await page.evaluate(
            "(() => { const r = document.getElementById('map').getBoundingClientRect();"
            " return [r.left, r.top, r.width, r.height]; })()"
        )
        got["legend"] = await page.evaluate("document.getElementById('legend').innerText")
        got["basemap"] = await page.evaluate("document.getElementById('basemap').checked")
        got["online"] = await page.evaluate("navigator.onLine")
        got["map"] = await page.screenshot()
        for name, status in (("duplicate", 1), ("gps", 2)):
            i = await page.evaluate(f"amlyReport.find({status})")
            assert i >= 0, f"no {name} on the map"
            x, y = await page.evaluate(f"amlyReport.screen({i})")
            await page.click(x, y)
            got[name] = await page.evaluate("document.getElementById('infobody').innerText")
            got[name + "_thumb"] = await page.evaluate(
                "(() => { const i = document.querySelector('#infobody img');"
                " return i ? [i.complete, i.naturalWidth, i.src.slice(0, 22)] : null; })()"
            )
            got[name + "_file"] = await page.evaluate(f"amlyReport.file({i})")
        got["clicked"] = await page.screenshot()
        keep(got["clicked"], shot)
        got["errors"] = page.errors
        return got


def _drawn(got: dict[str, Any]) -> Image.Image:
    import io

    left, top, w, h = got["rect"]
    img = Image.open(io.BytesIO(got["map"])).convert("RGB")
    return img.crop((int(left), int(top), int(left + w), int(top + h)))


@needs_chromium
@pytest.mark.parametrize("offline", [True, False], ids=["offline", "no-tiles"])
def test_page_in_chromium(processed: Path, tmp_path: Path, offline: bool) -> None:
    """Offline (DevTools network emulation) and 'online' with every tile request failing
    (a dead proxy): the map, the legend and the photo panel work the same."""
    html = tmp_path / "r.html"
    assert report(processed, "-o", html, "--thumbnails").returncode == 0
    text = html.read_text()
    doc = json.loads(re.search(r'id="amly-data">(.*?)</script>', text, re.S).group(1))  # type: ignore[union-attr]
    flags = [] if offline else ["--proxy-server=http://127.0.0.1:9"]
    got = asyncio.run(
        _inspect(
            html, f"report-{'offline' if offline else 'no-tiles'}.png", offline=offline, flags=flags
        )
    )
    assert got["errors"] == []
    assert got["online"] is (not offline) and got["basemap"] is (not offline)
    canvas = _drawn(got)
    assert not blank(canvas), "the map canvas is blank"
    counts = colours_present(canvas, [s["color"] for s in doc["seqs"]])
    assert all(n > 50 for n in counts.values()), f"a sequence is not drawn: {counts}"
    for seq in sequence_ids(processed):
        assert short(seq) in got["legend"]
    dup = next(
        e
        for e in description(processed)
        if e.get("error", {}).get("type") == "MapillaryDuplicationError"
        and e["filename"] == got["duplicate_file"]
    )
    assert "duplicate of" in got["duplicate"]
    # --thumbnails: the local photo's thumbnail is embedded (the synthetic photos are 320 wide).
    assert got["duplicate_thumb"] == [True, 160, "data:image/jpeg;base64"]
    assert dup["error"]["message"].split(": ", 1)[1][:40] in got["duplicate"]
    assert os.path.basename(got["duplicate_file"]) in got["duplicate"]
    assert "MapillaryCaptureSpeedTooFastError" in got["gps"] or "MapillaryZigZagError" in got["gps"]


# -- upload results and download coverage ---------------------------------------------------------

BOX = (13.400, 52.500, 13.404, 52.503)


def _amly_at(srv: Any, home: Path, *args: str | os.PathLike[str]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAPILLARY_")}
    env.update(AMLY_HOME=str(home), MAPILLARY_ACCESS_TOKEN=srv.token)
    proc = subprocess.run(
        [sys.executable, "-m", "amly", *map(str, args), "--endpoint", srv.url, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout)


async def _panels(html: Path) -> dict[str, Any]:
    async with Chromium(offline=True) as page:
        await page.open(html.as_uri())
        await page.wait_for("window.amlyReport && window.amlyReport.ready")
        got = {
            k: await page.evaluate(f"document.getElementById('{k}').innerText")
            for k in ("uploads", "cover", "legend")
        }
        rect = await page.evaluate(
            "(() => { const r = document.getElementById('map').getBoundingClientRect();"
            " return [r.left, r.top, r.width, r.height]; })()"
        )
        await page.evaluate("document.getElementById('coverage').click()")
        await page.wait_for("amlyReport.draws > 1")
        got["map"], got["rect"] = await page.screenshot(), rect
        keep(got["map"], "report-upload-download.png")
        got["errors"] = page.errors
        return got


@pytest.mark.slow
@needs_chromium
def test_upload_clusters_and_download_coverage(processed: Path, tmp_path: Path) -> None:
    from amly.server.seed import seed_store
    from amly.server.store import Store
    from amly.server.testing import running_server

    store = Store(tmp_path / "server")
    try:
        seed_store(store, 150, BOX, seed=1)
    finally:
        store.close()
    tree = tmp_path / "tree"
    write_drive(tree / "a", drive(30, stop_at=None, park_at=None, start_lat=52.51))
    with running_server(tmp_path / "server") as srv:
        up = _amly_at(srv, tmp_path / "home", "upload", processed, "--report", tmp_path / "up.html")
        assert up["ok"] and len(up["cluster_ids"]) == 2, up
        pu = _amly_at(
            srv, tmp_path / "home", "process-and-upload", tree, "--report", tmp_path / "pu.html"
        )
        assert pu["ok"] and len(pu["cluster_ids"]) == 1, pu
        box = ",".join(map(str, BOX))
        out = tmp_path / "box"
        down = _amly_at(
            srv, tmp_path / "home", "download", "images", "--bbox", box, "--size", "256",
            "--out", out, "--report", tmp_path / "down.html",
        )  # fmt: skip
    assert down["ok"], down
    # --report on the verbs: the same page, from what the run held in memory.
    assert up["report"] == str(tmp_path / "up.html") and pu["report"] == str(tmp_path / "pu.html")
    verb_up, verb_pu, verb_down = (page_data(tmp_path / f"{n}.html") for n in ("up", "pu", "down"))
    assert {s["cluster"] for s in verb_up["seqs"]} == set(up["cluster_ids"])
    assert sum(s["photos"] for s in verb_up["seqs"]) == up["counts"]["images"]
    assert verb_up["summary"]["failed"] == 0  # an upload of a processed folder fails nothing
    assert [s["cluster"] for s in verb_pu["seqs"]] == pu["cluster_ids"]
    assert verb_pu["seqs"][0]["photos"] == 30 and verb_pu["seqs"][0]["m"] > 300
    assert verb_pu["uploads"][0]["verb"] == "process-and-upload"
    assert verb_down["summary"]["downloaded"] == down["counts"]["downloaded"] > 0
    (tmp_path / "upload.json").write_text(json.dumps(up))
    html = tmp_path / "r.html"
    r = report(processed, tmp_path / "upload.json", out, "-o", html, "--json")
    assert r.returncode == 0, r.stderr
    doc = page_data(html)
    index = json.loads((out / "index.geojson").read_text())["features"]
    assert sum(c[3] for c in doc["coverage"]) == len(index) == doc["summary"]["downloaded"] > 0
    by_id = {s["id"]: s for s in doc["seqs"]}
    for row in up["sequences"]:
        assert by_id[row["name"].rsplit("#", 1)[1]]["cluster"] == row["cluster_id"]
    downloaded_seqs = {f["properties"]["sequence_id"] for f in index}
    assert downloaded_seqs <= set(by_id)
    got = asyncio.run(_panels(html))
    assert got["errors"] == []
    for cid in up["cluster_ids"]:
        assert cid in got["uploads"]
    assert f"hold {len(index)} photos" in got["cover"]
    for s in downloaded_seqs:
        assert short(s) in got["legend"]
    import io

    left, top, w, h = got["rect"]
    canvas = Image.open(io.BytesIO(got["map"])).crop((left, top, left + w, top + h))
    hist = canvas.convert("RGB").getcolors(1 << 24) or []
    orange = sum(n for n, (r_, g, b) in hist if r_ > 230 and 150 < g < 225 and b < 170)
    assert orange > 1000, "the coverage layer is not drawn"


async def _hostile(html: Path) -> dict[str, Any]:
    async with Chromium(offline=True) as page:
        await page.open(html.as_uri())
        await page.wait_for("window.amlyReport && window.amlyReport.ready")
        x, y = await page.evaluate("amlyReport.screen(amlyReport.find(1))")
        await page.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        await page.wait_for("!document.getElementById('tip').hidden")
        tip = await page.evaluate("document.getElementById('tip').innerText")
        await page.click(x, y)
        info = await page.evaluate("document.getElementById('infobody').innerText")
        injected = await page.evaluate("document.querySelectorAll('[onerror], .pwned').length")
        keep(await page.screenshot(), "report-hostile.png")
        return {"tip": tip, "info": info, "injected": injected, "errors": page.errors}


@needs_chromium
def test_hostile_names_and_values_are_shown_as_text(tmp_path: Path) -> None:
    """A description file (anyone's) with markup in names and reasons, and values that are
    not numbers or out of range: the page shows the text, runs nothing, draws the rest."""
    evil = "<img src=x onerror=\"document.body.classList.add('pwned')\"></script><!--"
    base = {"MAPCaptureTime": "2024_06_01_10_00_00_000", "MAPSequenceUUID": "s</script>"}
    entries: list[dict[str, Any]] = [
        {**base, "filename": f"/x/a{i}.jpg", "MAPLatitude": 52.5 + i * 1e-4, "MAPLongitude": 13.4}
        for i in range(5)
    ]
    entries += [
        {**base, "filename": "/x/bad1.jpg", "MAPLatitude": "52", "MAPLongitude": 13.4},
        {**base, "filename": "/x/bad2.jpg", "MAPLatitude": 95.0, "MAPLongitude": 13.4},
        {**base, "filename": "/x/bad3.jpg", "MAPCompassHeading": "north"},
        {"filename": 7},
        "not an entry",
        {
            "filename": f"/x/{evil}.jpg",
            "MAPLatitude": 52.5002,
            "MAPLongitude": 13.4,
            "error": {"type": "MapillaryDuplicationError", "message": f"dup {evil}"},
        },
    ]
    desc = tmp_path / "desc.json"
    desc.write_text(json.dumps(entries))
    html = tmp_path / "r.html"
    r = report(desc, "-o", html, "--png", tmp_path / "r.png", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["counts"]["photos"] == 9  # the two non-entries are counted aside
    got = asyncio.run(_hostile(html))
    assert got["errors"] == [] and got["injected"] == 0
    # The name holds a '/', so its last part is the file name; the panel shows the full path.
    assert f"/x/{evil}.jpg" in got["info"] and f"dup {evil}" in got["info"]
    assert "script><!--.jpg" in got["tip"] and f"dup {evil}" in got["tip"]


def test_report_from_memory_matches_report_from_the_file(processed: Path, tmp_path: Path) -> None:
    """What the verbs hold in memory (sequences, errors) gives the report the description
    file gives."""
    from amly import report as amly_report
    from amly.pipeline import Options, iter_groups

    mem = amly_report.Report()
    for group in iter_groups([processed], Options()):
        mem.add_processed(group.sequences, group.errors, source=str(processed))
    disk = amly_report.Report()
    disk.add(processed)
    a, b = mem.finish(), disk.finish()
    # Sequence ids are new on every run: compare everything else.
    assert [([p.file for p in s.photos], round(s.length_m, 3)) for s in a.sequences] == [
        ([p.file for p in s.photos], round(s.length_m, 3)) for s in b.sequences
    ]
    assert len(a.sequences) == 2
    assert sorted((p.file, p.status, p.lat) for p in a.flagged) == sorted(
        (p.file, p.status, p.lat) for p in b.flagged
    )


def test_process_report_option(processed: Path, tmp_path: Path) -> None:
    """``amly process --report``: the page of the run, as ``amly report`` draws the folder."""
    html = tmp_path / "p.html"
    out = amly("process", processed, "--desc-path", tmp_path / "d.json", "--report", html, "--json")
    assert out.returncode == 1, out.stderr  # the broken files
    summary = json.loads(out.stdout)
    assert summary["report"] == str(html)
    doc = page_data(html)
    types = Counter(
        e["error"]["type"] for e in json.loads((tmp_path / "d.json").read_text()) if "error" in e
    )
    assert doc["summary"]["errors"] == dict(types)
    assert doc["summary"]["photos"] == summary["counts"]["images"]
    assert len(doc["seqs"]) == summary["counts"]["sequences"] == 2
    assert doc["summary"]["gps"] == 1 and len(doc["gaps"]) == 1
    bad = amly(
        "process",
        processed,
        "--desc-path",
        tmp_path / "e.json",
        "--report",
        tmp_path / "no" / "r.html",
        "--json",
    )
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    fails = json.loads(bad.stdout)["failures"]
    assert any(f["type"] == "report" and "cannot write the report" in f["error"] for f in fails)
    assert (tmp_path / "e.json").exists()  # the run's own work stands


def _photo(
    path: Path,
    colour: tuple[int, int, int],
    *,
    thumb: tuple[int, int, int] | None,
    orientation: int = 1,
) -> Path:
    """A 640x480 JPEG of one colour; with ``thumb`` an EXIF thumbnail of another colour."""
    import io

    import piexif

    exif: dict[str, Any] = {"0th": {piexif.ImageIFD.Orientation: orientation}}
    if thumb is not None:
        buf = io.BytesIO()
        Image.new("RGB", (160, 120), thumb).save(buf, "JPEG")
        exif["1st"] = {
            piexif.ImageIFD.JPEGInterchangeFormat: 0,
            piexif.ImageIFD.JPEGInterchangeFormatLength: 0,
        }
        exif["thumbnail"] = buf.getvalue()
    Image.new("RGB", (640, 480), colour).save(path, "JPEG", exif=piexif.dump(exif))
    return path


def _decoded(uri: str | None) -> Image.Image:
    import base64
    import io

    assert uri and uri.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")  # the broken file, on purpose
def test_thumbnails_use_the_cameras_exif_thumbnail(tmp_path: Path) -> None:
    """A photo with an EXIF thumbnail gives that one (no decode of the photo); one without
    is decoded; the photo's orientation applies to both; a broken file gives none."""
    from amly.report._thumbs import thumbnail

    red, blue = (200, 0, 0), (0, 0, 200)
    with_thumb = _decoded(thumbnail(str(_photo(tmp_path / "a.jpg", red, thumb=blue))))
    assert with_thumb.size == (160, 120)
    assert all(abs(c - b) < 30 for c, b in zip(with_thumb.getpixel((80, 60)), blue, strict=True))
    plain = _decoded(thumbnail(str(_photo(tmp_path / "b.jpg", red, thumb=None))))
    assert plain.size == (160, 120)
    assert all(abs(c - r) < 30 for c, r in zip(plain.getpixel((80, 60)), red, strict=True))
    turned = _decoded(thumbnail(str(_photo(tmp_path / "c.jpg", red, thumb=blue, orientation=6))))
    assert turned.size == (120, 160)
    turned_plain = _decoded(
        thumbnail(str(_photo(tmp_path / "d.jpg", red, thumb=None, orientation=6)))
    )
    assert turned_plain.size == (120, 160)
    (tmp_path / "e.jpg").write_bytes(b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00II*\x00\xff\xff\xff\x7f")
    assert thumbnail(str(tmp_path / "e.jpg")) is None
    assert thumbnail(str(tmp_path / "missing.jpg")) is None
