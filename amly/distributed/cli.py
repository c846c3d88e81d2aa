"""The command-line side of :mod:`amly.distributed`: ``--dask``/``--shard`` on ``amly download
images`` and the ``amly download merge`` verb (``amly.cli.download`` wires them in)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..config import Endpoints, Secret

if TYPE_CHECKING:
    from ..client import Client
from ..errors import UsageError
from ..net import Limits
from .shard import ShardSpec

__all__ = ["add_options", "register_merge", "run_images", "wanted"]


def add_options(p: argparse.ArgumentParser, *, shard: bool = True) -> None:
    """``--dask SCHEDULER`` and (with ``shard``) ``--shard K/N``."""
    g = p.add_argument_group("beyond one machine")
    g.add_argument(
        "--dask",
        metavar="SCHEDULER",
        help="run on a Dask cluster: local:N (N worker processes on this machine) or "
        "tcp://HOST:8786 (a running scheduler; the workers need amly[dask] and --out at the "
        "same path). The rate limits hold for the whole cluster",
    )
    if not shard:
        return
    g.add_argument(
        "--shard",
        metavar="K/N",
        help="do only the K-th of N shares of the box (a stable split by tile groups), for N "
        "machines without a cluster; each share's rate limits are 1/N of the token's; join "
        "the N --out folders with 'amly download merge'",
    )


def wanted(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "dask", None) or getattr(args, "shard", None))


def _checked(client: Client) -> tuple[Endpoints, Secret]:
    """The endpoints and the token, resolved and checked once here (``GET /me``) before any
    worker starts: a bad token fails the job at once, not on every worker."""
    from ..cli._common import run_async

    async def main() -> Secret:
        async with client:
            await client.me()
            return await client.token()

    return client.endpoints, run_async(main())


def _shared_limits(limits: Limits, n: int) -> Limits:
    """Each of ``n`` independent shards gets 1/n of the token's limits.

    >>> _shared_limits(Limits(), 4).search_per_minute
    2500.0
    """
    return dataclasses.replace(
        limits,
        **{
            f.name: None if getattr(limits, f.name) is None else getattr(limits, f.name) / n
            for f in dataclasses.fields(limits)
        },
    )


def run_images(
    args: argparse.Namespace,
    *,
    bbox: tuple[float, float, float, float],
    size: str,
    filters: Any,
    client: Client,
    limits: Limits,
    summary: Any,
    progress: Any,
    report: Callable[[str | None, list[dict[str, Any]]], None] | None = None,
) -> int:
    """``amly download images`` with ``--dask`` and/or ``--shard``; ``report(index,
    failures)`` writes ``--report`` before the summary."""
    from .cluster import JobSpec, connect, run_job, run_shard
    from .tilejob import TileQuery

    endpoints, token = _checked(client)

    if args.max_results is not None:
        raise UsageError("--max-results cannot be combined with --dask or --shard")
    shard = ShardSpec.parse(args.shard) if args.shard else None
    if shard is not None and not args.dask:
        limits = _shared_limits(limits, shard.count)
    query = TileQuery(bbox, filters, size, search_limit=args.search_limit, method=args.method)

    def on_progress(n: int) -> None:
        progress.update(n - progress.done)

    if args.dask:
        dask, cluster = connect(args.dask)
        try:
            workers = max(1, len(dask.scheduler_info().get("workers", {})))
            spec = JobSpec(
                endpoints, token, query, args.out, limits, args.concurrency, workers=workers
            )
            res = run_job(dask, spec, shard=shard, on_progress=on_progress)
        finally:
            dask.close()
            if cluster is not None:
                cluster.close()
    else:
        spec = JobSpec(endpoints, token, query, args.out, limits, args.concurrency)
        res = run_shard(spec, shard, on_progress=on_progress)
    progress.close()
    st = res.stats
    # Every request: the workers' and the token check made here.
    requests = st.requests + client.transport.stats["requests"]
    summary.count("downloaded", st.downloaded)
    summary.count("reused", st.reused)
    for f in st.failures:
        summary.fail(f["error"], path=f["file"], kind=f["type"])
    for e in res.errors:
        summary.fail(e, path=args.out, kind="WorkerError")
    if res.tiles_unfinished and not st.failures and not res.errors:
        summary.fail(
            f"{res.tiles_unfinished} tile(s) did not finish: rerun the same command to resume",
            path=args.out,
            kind="Unfinished",
        )
    summary.info.update(
        out=args.out,
        index=res.index,
        bytes=st.bytes,
        urls_resolved_again=st.resolves,
        requests=requests,
        requests_per_image=round(requests / st.images, 4) if st.images else None,
        distributed={
            "dask": args.dask,
            "shard": str(shard) if shard else None,
            "groups": res.groups,
            "groups_resubmitted": res.resubmitted,
        },
        enumeration={
            "method": args.method,
            "tiles": res.tiles,
            "tiles_read": st.tiles,
            "tiles_skipped": st.tiles_reused,
            "searches": st.searches,
            "splits": st.splits,
            "entity_lookups": st.lookups,
        },
    )
    if report is not None:
        report(res.index, st.failures)
    return int(summary.emit(args))


def register_merge(sub: Any) -> None:
    """``amly download merge DIR... --out DIR``."""
    from ..cli._options import add_output_options

    p = sub.add_parser(
        "merge",
        help="merge download folders (e.g. of --shard K/N runs) into one",
        description="Bring the images of several download folders into --out (hard links "
        "where possible) and write one index.geojson listing each image once.",
    )
    p.add_argument("dirs", nargs="+", metavar="DIR", help="download folders to merge")
    p.add_argument("--out", required=True, metavar="DIR", help="the merged folder")
    add_output_options(p)
    p.set_defaults(func=run_merge)


def run_merge(args: argparse.Namespace) -> int:
    from ..cli._common import Summary
    from .merge import merge_outputs

    summary = Summary("download merge")
    res = merge_outputs(args.dirs, args.out)
    summary.count("images", res.images)
    summary.count("linked", res.linked)
    summary.count("copied", res.copied)
    summary.count("already there", res.kept)
    if res.duplicates:
        summary.count("duplicates skipped", res.duplicates)
    for f in res.failures:
        summary.fail(f["error"], path=f["file"], kind=f["type"])
    summary.info.update(out=args.out, index=res.index, inputs=res.inputs)
    return int(summary.emit(args))


def run_gpx(
    args: argparse.Namespace,
    *,
    bbox: tuple[float, float, float, float],
    client: Client,
    limits: Limits,
    summary: Any,
) -> int:
    """``amly download gpx --dask``."""
    from ..services.mapillary import Filters
    from .cluster import JobSpec, connect
    from .gpxjob import run_gpx_job
    from .tilejob import TileQuery

    if args.max_results is not None:
        raise UsageError("--max-results cannot be combined with --dask")
    if args.method != "tiles":
        raise UsageError("--dask enumerates by tiles: drop --method search")
    endpoints, token = _checked(client)
    dask, cluster = connect(args.dask)
    try:
        workers = max(1, len(dask.scheduler_info().get("workers", {})))
        query = TileQuery(bbox, Filters(username=args.user))
        spec = JobSpec(endpoints, token, query, args.out, limits, args.concurrency, workers=workers)
        res = run_gpx_job(dask, spec)
    finally:
        dask.close()
        if cluster is not None:
            cluster.close()
    summary.count("tracks", res.written)
    if res.existing:
        summary.count("tracks already there", res.existing)
    if res.skipped_user:
        summary.count("other users' sequences", res.skipped_user)
    for f in res.failures:
        summary.fail(f["error"], path=f["file"], kind=f["type"])
    for e in res.errors:
        summary.fail(e, path=args.out, kind="WorkerError")
    summary.info.update(out=args.out, sequences=res.sequences, dask=args.dask)
    return int(summary.emit(args))
