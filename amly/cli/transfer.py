"""``amly transfer``: move the images of a Mapillary box (or one sequence) into Panoramax, one
upload set per Mapillary sequence, with capture time, position, direction and camera carried in
the EXIF the download writes.

Streamed, sequence by sequence: the Mapillary download (resumable, its own manifest) writes
one sequence's ``<sequence>/<image>.jpg`` into a work folder while the sequence before it is
sent as one upload set (amly's processing with splitting and deduplication off: a Mapillary
sequence stays one sequence); a sequence's photos leave the work folder once its set is complete,
so at most two sequences are on disk, unless ``--keep DIR`` names the folder to keep them in. A rerun sends nothing twice: the journal knows every file's content
(md5) and every set; sets are keyed by the sequence, so an interrupted transfer resumes in the
same sets.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from .._atomic import atomic_write
from ..errors import UsageError
from ._common import Progress, Summary, run_async
from ._options import add_network_options, add_output_options, client_from_args

EPILOG = """\
examples:
  amly transfer --bbox=2.33,48.85,2.36,48.87 --to panoramax --api-url https://panoramax.example.org
  amly transfer --sequence SEQ_ID --to panoramax --api-url URL --keep mly_copy/ --wait

The Mapillary token: --token, MAPILLARY_ACCESS_TOKEN or the 'amly auth' profile; the Panoramax
one: PANORAMAX_TOKEN or 'amly auth --service panoramax'.
exit codes: as 'amly upload'
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "transfer",
        help="move Mapillary images of a box or sequence into Panoramax upload sets",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--bbox", metavar="W,S,E,N", help="the Mapillary box")
    what.add_argument("--sequence", metavar="ID", help="one Mapillary sequence")
    p.add_argument("--to", choices=("panoramax",), default="panoramax", help="[panoramax]")
    p.add_argument("--api-url", required=True, metavar="URL", help="the Panoramax instance")
    p.add_argument(
        "--size", default="original", help="Mapillary size to move: original (default), 2048..."
    )
    p.add_argument("--keep", metavar="DIR", help="keep the downloaded photos in DIR")
    p.add_argument("--journal", metavar="PATH", help="resume journal [DATA_DIR/journal.sqlite3]")
    p.add_argument("--wait", action="store_true", help="return once Panoramax prepared them all")
    add_network_options(p, concurrency=16, what="transfers")
    add_output_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import data_dir
    from ..pipeline import Options
    from ..services.mapillary import normalize_size
    from .download import parse_bbox

    if not str(args.api_url).startswith(("http://", "https://")):
        raise UsageError(f"--api-url must be an http(s) URL, not {args.api_url!r}")
    size, _note = normalize_size(args.size)
    # One work folder per (Mapillary, Panoramax, size), whatever the box: the same image lands
    # at the same path in every transfer, so its sequence keeps its upload set across queries.
    query = f"{args.endpoint}|{size}|{args.api_url}"
    work = (
        Path(args.keep)
        if args.keep
        else data_dir() / "transfer" / hashlib.md5(query.encode()).hexdigest()[:16]
    )
    # a Mapillary sequence stays one Panoramax sequence: no split, no dedup, no checks
    process = Options(
        cutoff_distance=1e12,
        cutoff_time=1e12,
        max_images=None,
        max_sequence_filesize=None,
        max_sequence_pixels=None,
        duplicate_distance=0.0,
        max_speed_kmh=None,
        check_zigzag=False,
        recursive=True,
    )
    summary = Summary("transfer")
    progress = Progress("transfer", None, enabled=not (args.no_progress or args.quiet))

    async def main() -> tuple[Any, Any, list[Any]]:
        from ..services.mapillary import DownloadResult, Filters
        from ..services.upload import UploadResult

        async with client_from_args(args, journal=args.journal) as client:
            if args.sequence:
                track = await client.sequence_track(args.sequence)
                if not track:
                    raise UsageError(f"Mapillary sequence {args.sequence} has no images")
                plan = [(args.sequence, _extent([(p.lon, p.lat) for p in track], None))]
            else:
                box = parse_bbox(args.bbox)
                plan = await _plan(client, box)
            target = client.panoramax_target(args.api_url)
            creators: dict[str, str] = {}
            kept: dict[str, Any] = {}  # index features of every sequence (each run writes its own)
            target.set_metadata = _origin(creators, args.endpoint)
            down, up = DownloadResult(), UploadResult()
            # Streamed: one sequence downloads while the one before uploads; a sequence's
            # photos leave the work folder once its set is complete, so at most
            # IN_FLIGHT sequences are on disk at any time.
            slots = asyncio.Semaphore(IN_FLIGHT)
            ready: asyncio.Queue[tuple[str, bool] | None] = asyncio.Queue()

            async def fetch() -> None:
                try:
                    for seq, seq_box in plan:
                        await slots.acquire()
                        d = await client.download_images(
                            seq_box,
                            work,
                            size=size,
                            filters=Filters(sequence_id=seq),
                            on_image=lambda _i, _s: progress.update(),
                        )
                        down.downloaded += d.downloaded
                        down.reused += d.reused
                        down.failures.extend(d.failures)
                        features = _features(work)
                        kept.update(
                            (str((f.get("properties") or {}).get("id")), f) for f in features
                        )
                        creators.update(_creators(features))
                        ready.put_nowait((seq, not d.failures))
                finally:
                    ready.put_nowait(None)

            fetching = asyncio.ensure_future(fetch())
            try:
                while (item := await ready.get()) is not None:
                    seq, fetched = item
                    folder = work / seq
                    try:
                        if not folder.is_dir():
                            continue
                        one = await client.upload(
                            [str(folder)], target=target, process=process, reprocess=True
                        )
                        up.sequences.extend(one.sequences)
                        up.failures.extend(one.failures)
                        up.duplicates.extend(one.duplicates)
                        up.processed += one.processed
                        if not args.keep and one.ok and fetched:
                            # on Panoramax: the copies go (the manifest stays for a rerun)
                            shutil.rmtree(folder, ignore_errors=True)
                    finally:
                        slots.release()
            finally:
                if not fetching.done():
                    fetching.cancel()
                try:
                    await fetching
                except asyncio.CancelledError:
                    pass
            if args.keep and kept:
                # the kept folder's index.geojson covers every sequence moved, not the last one
                body = {"type": "FeatureCollection", "features": list(kept.values())}
                await asyncio.to_thread(
                    atomic_write, work / "index.geojson", json.dumps(body).encode()
                )
            waited = list(await target.wait_ready(up.cluster_ids)) if args.wait else []
            return down, up, waited

    try:
        down, up, waited = run_async(main())
    finally:
        progress.close()
    from .upload import _panoramax_summary, _summarise

    summary.count("downloaded", down.downloaded)
    summary.count("reused_downloads", down.reused)
    for f in down.failures:
        summary.fail(f["error"], path=f["file"], kind=f["type"])
    _summarise(summary, up, False)
    _panoramax_summary(summary, up, waited, args.wait)
    if not args.keep and not (up.ok and not down.failures) and not args.quiet:
        print(f"amly transfer: photos kept in {work} until a rerun finishes", file=sys.stderr)
    return summary.emit(args)


#: Mapillary sequences on disk at once: one downloading while the one before uploads.
IN_FLIGHT = 2


def _extent(points: list[tuple[float, float]], clip: Any) -> Any:
    """The box around a sequence's images (padded: a box has an area), inside ``clip``."""
    from ..services.mapillary import check_bbox

    pad = 1e-4
    w, s = min(p[0] for p in points) - pad, min(p[1] for p in points) - pad
    e, n = max(p[0] for p in points) + pad, max(p[1] for p in points) + pad
    if clip is not None:
        w, s, e, n = max(w, clip[0]), max(s, clip[1]), min(e, clip[2]), min(n, clip[3])
    return check_bbox((w, s, e, n))


async def _plan(client: Any, box: Any) -> list[tuple[str, Any]]:
    """The box's Mapillary sequences, each with the box around its images in ``box``."""
    from ..services.mapillary.query import position

    where: dict[str, list[tuple[float, float]]] = {}
    async for ent in client.images(box, fields=("sequence", "geometry")):
        pos, seq = position(ent), ent.get("sequence")
        if pos is not None and isinstance(seq, str) and seq:
            where.setdefault(seq, []).append(pos)
    return [(seq, _extent(pts, box)) for seq, pts in sorted(where.items())]


def _features(work: Path) -> list[dict[str, Any]]:
    """The features of the ``index.geojson`` the last download wrote."""
    try:
        index = json.loads((work / "index.geojson").read_text())
        return [f for f in index.get("features", []) if isinstance(f, dict)]
    except (OSError, ValueError, AttributeError):
        return []


def _creators(features: list[dict[str, Any]]) -> dict[str, str]:
    """Each sequence's creator, from the download's index features."""
    creators: dict[str, str] = {}
    for f in features:
        props = f.get("properties") or {}
        if isinstance(props, dict) and props.get("sequence_id") and props.get("creator"):
            creators[str(props["sequence_id"])] = str(props["creator"])
    return creators


def _origin(creators: dict[str, str], endpoint: str | None) -> Any:
    """Each set's metadata names where it came from: the Mapillary sequence and its creator
    (Panoramax records the uploader as the producer)."""
    import os

    def metadata(seq: Any) -> dict[str, Any]:
        folder = os.path.basename(os.path.dirname(seq.images[0].path)) if seq.images else ""
        out = {"source": "mapillary", "mapillary_sequence": folder}
        if endpoint:
            out["mapillary_endpoint"] = endpoint
        if folder in creators:
            out["mapillary_creator"] = creators[folder]
        return out

    return metadata
