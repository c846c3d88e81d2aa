"""``amly download images|gpx``: fetch the imagery or the GPS tracks of a box.

Images land in ``OUT/<sequence id>/<image id>.jpg`` with EXIF (position, altitude, capture
time, direction, camera) written in, plus ``OUT/index.geojson``. A rerun resumes: finished
images are skipped (``OUT/.amly/manifest.sqlite3``); a rerun with another box or filters
reuses the files the two queries share (``index.geojson`` describes the latest query).
Tracks land in ``OUT/<sequence id>.gpx`` (GPX 1.1, one per sequence).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Coroutine
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..distributed import cli as distributed_cli
from ..errors import UsageError
from ..net import Limits
from ..services.mapillary import SEARCH_LIMIT, Filters, check_bbox, normalize_size, plan_size
from ._common import (
    Progress,
    Summary,
    run_async,
)
from ._options import (
    add_network_options,
    add_output_options,
    add_report_option,
    client_from_args,
    report_from_args,
    write_report,
)

if TYPE_CHECKING:
    from ..services.mapillary import DownloadResult, GpxResult

IMAGES_DOC = """Download every image in a box: OUT/<sequence id>/<image id>.jpg with EXIF
(GPS position and altitude, capture time, direction, make/model) and OUT/index.geojson.

Enumeration: --method tiles (default) reads the z14 vector tiles, which have no result cap;
--method search asks /images over cells under 0.01 degrees that split in four whenever an
answer is full (then by capture time); a cell that still cannot be split is reported.
Either way the searches answer each image's metadata and thumbnail URL in bulk: about one
request per image, the image included ("requests_per_image" in the summary).

On a cluster: --dask local:N or tcp://HOST:8786 shards the box by tile groups over Dask
workers (rate limits held for the whole cluster, per-tile completion markers, whole-job
progress); --shard K/N runs one share of N, and 'amly download merge' joins the folders.

Resume: OUT/.amly/manifest.sqlite3 records the query, each finished image and (tiles) each
finished tile. A rerun (after Ctrl-C, a crash or kill -9) fetches only what is missing. A rerun with another box or
filters in the same OUT reuses the images both queries share, downloads the others, keeps
older files on disk, and writes an index.geojson of the new query only. Another --size
downloads again. Thumbnail URLs expire: one the CDN refuses is resolved again; none is
stored.
"""


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """``W,S,E,N`` -> floats, checked (a :class:`UsageError` before any work).

    >>> parse_bbox("13.4,52.5,13.41,52.51")
    (13.4, 52.5, 13.41, 52.51)
    """
    parts = [p for p in text.replace(" ", "").split(",") if p]
    try:
        nums = tuple(float(p) for p in parts)
    except ValueError:
        raise UsageError(f"bad --bbox {text!r}: need 4 numbers WEST,SOUTH,EAST,NORTH") from None
    if len(nums) != 4:
        raise UsageError(f"bad --bbox {text!r}: need 4 numbers WEST,SOUTH,EAST,NORTH")
    return check_bbox(nums)


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 date or time; a naive one is UTC.

    >>> parse_time("2020-01-02").isoformat(), parse_time("2020-01-02T03:04:05Z").hour
    ('2020-01-02T00:00:00+00:00', 3)
    """
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"bad time {text!r}: use ISO 8601 like 2021-06-01T12:00:00Z") from None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt


def parse_limits(text: str | None) -> Limits:
    """``search=N,entity=N,tiles=N`` (per minute, per minute, per day; 0 = unlimited).

    >>> parse_limits("search=100,tiles=0").search_per_minute, parse_limits(None).tiles_per_day
    (100.0, 50000)
    """
    limits = Limits()
    if not text:
        return limits
    names = {"search": "search_per_minute", "entity": "entity_per_minute", "tiles": "tiles_per_day"}
    for item in text.split(","):
        key, _, value = item.partition("=")
        if key.strip() not in names:
            raise UsageError(f"bad --rate-limits item {item!r}: use search=N,entity=N,tiles=N")
        try:
            n = float(value)
        except ValueError:
            raise UsageError(f"bad --rate-limits value in {item!r}") from None
        setattr(limits, names[key.strip()], None if n <= 0 else n)
    return limits


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bbox", required=True, metavar="W,S,E,N", help="box in degrees")
    p.add_argument(
        "--out",
        default="mapillary_download",
        metavar="DIR",
        help="output folder, or s3://BUCKET/PREFIX",
    )
    p.add_argument("--max-results", type=int, metavar="N", help="stop after N results")
    p.add_argument("--user", metavar="NAME", help="only this creator's images")
    add_network_options(p, concurrency=64)
    p.add_argument(
        "--method",
        choices=("tiles", "search"),
        default="tiles",
        help="enumerate with z14 vector tiles (default; no cap) or with searches over "
        "cells that split when full",
    )
    p.add_argument(
        "--rate-limits",
        metavar="SPEC",
        help="per-surface limits search=N,entity=N (per minute),tiles=N (per day); 0 = none",
    )
    p.add_argument("--search-limit", type=int, default=SEARCH_LIMIT, help=argparse.SUPPRESS)
    add_output_options(p)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "download",
        help="download images or GPS tracks of a box",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="what", metavar="WHAT")
    sub.required = True

    pi = sub.add_parser(
        "images",
        help="download images (with EXIF) and an index.geojson",
        description=IMAGES_DOC,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(pi)
    pi.add_argument(
        "--size",
        default="1024",
        metavar="S",
        help="256, 1024 (default), 2048 or original (legacy 320/640 map to 256/1024)",
    )
    pi.add_argument("--start", metavar="TIME", help="captured at or after (ISO 8601)")
    pi.add_argument("--end", metavar="TIME", help="captured at or before (ISO 8601)")
    pano = pi.add_mutually_exclusive_group()
    pano.add_argument(
        "--pano", dest="pano", action="store_true", default=None, help="only panoramas"
    )
    pano.add_argument("--no-pano", dest="pano", action="store_false", help="exclude panoramas")
    pi.add_argument("--organization-id", metavar="ID", help="only this organization's images")
    pi.add_argument(
        "--from",
        dest="source",
        choices=("mapillary", "panoramax"),
        default="mapillary",
        help="the service to download from [mapillary]; panoramax needs --api-url "
        "(--size hd, sd or thumb; default hd, the original)",
    )
    pi.add_argument("--api-url", metavar="URL", help="with --from panoramax: the instance")
    add_report_option(pi)
    distributed_cli.add_options(pi)
    pi.set_defaults(func=run_images)

    pg = sub.add_parser("gpx", help="one GPX file per sequence found in the box")
    _common(pg)
    distributed_cli.add_options(pg, shard=False)
    pg.set_defaults(func=run_gpx)

    distributed_cli.register_merge(sub)


def _warn_if_huge(args: argparse.Namespace, bbox: tuple[float, float, float, float]) -> None:
    """A box that needs more than a day's tile quota is allowed (it resumes), but say so."""
    limits = parse_limits(args.rate_limits)
    n = plan_size(bbox, args.method)
    if args.method == "tiles" and limits.tiles_per_day and n > limits.tiles_per_day:
        days = n / limits.tiles_per_day
        print(
            f"amly download: this box needs {n:,} vector tiles; at {limits.tiles_per_day:,.0f} "
            f"a day that is about {days:,.1f} days; interrupt and rerun at will: finished "
            "tiles and images are not fetched again",
            file=sys.stderr,
        )


def _run_download(
    main: Callable[[], Coroutine[Any, Any, DownloadResult]], progress: Progress, summary: Summary
) -> DownloadResult:
    """Run a download (any service) and count what every download reports."""
    try:
        res = run_async(main())
    finally:
        progress.close()
    summary.count("downloaded", res.downloaded)
    summary.count("reused", res.reused)
    for f in res.failures:
        summary.fail(f["error"], path=f["file"], kind=f["type"])
    return res


def run_images(args: argparse.Namespace) -> int:
    if args.source == "panoramax":
        return _run_panoramax(args)
    if args.api_url:
        raise UsageError("--api-url goes with --from panoramax")
    bbox = parse_bbox(args.bbox)
    size, note = normalize_size(args.size)
    if note and not args.quiet:
        print(f"amly download: {note}", file=sys.stderr)
    if args.max_results is not None and args.max_results < 0:
        raise UsageError("--max-results must be >= 0")
    filters = Filters(
        start=parse_time(args.start),
        end=parse_time(args.end),
        username=args.user,
        is_pano=args.pano,
        organization_id=args.organization_id,
    )
    if filters.start and filters.end and filters.start > filters.end:
        raise UsageError("--start is after --end")
    _warn_if_huge(args, bbox)
    client = client_from_args(args, limits=parse_limits(args.rate_limits), journal=False)
    summary = Summary("download images")
    progress = Progress("download", args.max_results, enabled=not args.no_progress)
    if distributed_cli.wanted(args):
        return distributed_cli.run_images(
            args, bbox=bbox, size=size, filters=filters, client=client,
            limits=parse_limits(args.rate_limits), summary=summary, progress=progress,
            report=lambda index, failures: _report(args, index, failures, summary),
        )  # fmt: skip

    async def main() -> DownloadResult:
        async with client:
            return await client.download_images(
                bbox,
                args.out,
                size=size,
                filters=filters,
                method=args.method,
                max_results=args.max_results,
                search_limit=args.search_limit,
                on_image=lambda _i, _s: progress.update(),
            )

    res = _run_download(main, progress, summary)
    rep = res.report
    # Every request of the run (the token check, tiles, searches, entities, the images,
    # retries) per image stored: the rate limits per token are the ceiling at scale.
    requests = client.transport.stats["requests"]
    images = res.downloaded + res.reused
    summary.info.update(
        out=args.out,
        index=res.index,
        bytes=res.bytes,
        urls_resolved_again=res.resolves,
        query_changed=res.query_changed,
        requests=requests,
        requests_per_image=round(requests / images, 4) if images else None,
        enumeration={
            "method": args.method,
            "tiles": rep.tiles,
            "tiles_skipped": rep.tiles_skipped,
            "searches": rep.searches,
            "splits": rep.splits,
            "time_splits": rep.time_splits,
            "candidates": rep.candidates,
            "duplicates": rep.duplicates,
            "truncated_cells": len(rep.truncated),
            "entity_lookups": res.lookups,
        },
    )
    if rep.truncated:
        print(
            f"amly download: {len(rep.truncated)} search cell(s) were still full at the "
            "minimum size and time span: some images there may be missing; rerun with "
            "--method tiles",
            file=sys.stderr,
        )
    if res.query_changed and not args.quiet:
        print(
            "amly download: the query changed since the last run in this folder: shared "
            "images were reused; index.geojson describes this query only",
            file=sys.stderr,
        )
    _report(args, res.index, res.failures, summary)
    code = summary.emit(args)
    return 1 if rep.truncated and code == 0 else code


def _report(
    args: argparse.Namespace, index: str | None, failures: list[dict[str, Any]], summary: Summary
) -> None:
    """``--report``: the box's images (``index.geojson``: coverage per tile) and the failed
    ones (the same for a plain run and a ``--dask``/``--shard`` one)."""
    report = report_from_args(args, f"amly download images: {args.bbox}")
    if report is None:
        return
    from ..report import ReportInputError

    if index:
        try:
            report.add(index)
        except ReportInputError as e:
            summary.fail(f"the report cannot read {index}: {e.message}", index, "report")
    report.add_failures(failures, source="this run")
    write_report(args, report, summary)


def run_gpx(args: argparse.Namespace) -> int:
    bbox = parse_bbox(args.bbox)
    if args.max_results is not None and args.max_results < 0:
        raise UsageError("--max-results must be >= 0")
    client = client_from_args(args, limits=parse_limits(args.rate_limits), journal=False)
    summary = Summary("download gpx")
    if distributed_cli.wanted(args):
        return distributed_cli.run_gpx(
            args, bbox=bbox, client=client, limits=parse_limits(args.rate_limits), summary=summary
        )

    async def main() -> GpxResult:
        async with client:
            return await client.download_gpx(
                bbox, args.out, username=args.user, max_results=args.max_results, method=args.method
            )

    res = run_async(main())
    summary.count("tracks", res.written)
    if res.skipped_user:
        summary.count("other users' sequences", res.skipped_user)
    for f in res.failures:
        summary.fail(f["error"], path=f["file"], kind=f["type"])
    summary.info.update(out=args.out)
    return summary.emit(args)


def _run_panoramax(args: argparse.Namespace) -> int:
    """``--from panoramax``: the instance's STAC search, pictures written as Mapillary's are."""
    if not args.api_url:
        raise UsageError("--from panoramax needs --api-url URL (the instance)")
    if not str(args.api_url).startswith(("http://", "https://")):
        raise UsageError(f"--api-url must be an http(s) URL, not {args.api_url!r}")
    if args.start or args.end or args.user or args.pano is not None or args.organization_id:
        raise UsageError("--start/--end/--user/--pano/--organization-id are Mapillary filters")
    bbox = parse_bbox(args.bbox)
    size = "hd" if args.size == "1024" else args.size
    if args.max_results is not None and args.max_results < 0:
        raise UsageError("--max-results must be >= 0")
    out = "panoramax_download" if args.out == "mapillary_download" else args.out
    client = client_from_args(args, journal=False)
    summary = Summary("download images")
    progress = Progress("download", args.max_results, enabled=not args.no_progress)

    async def main() -> DownloadResult:
        async with client:
            return await client.panoramax_download_images(
                args.api_url,
                bbox,
                out,
                size=size,
                max_results=args.max_results,
                on_image=lambda _i, _s: progress.update(),
            )

    res = _run_download(main, progress, summary)
    summary.info.update(out=out, index=res.index, bytes=res.bytes, query_changed=res.query_changed)
    return summary.emit(args)
