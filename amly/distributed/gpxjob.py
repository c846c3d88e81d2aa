"""``amly download gpx --dask``: the GPS tracks of every sequence in a box, on a cluster.

Two rounds of keyed tasks. First, tile groups: each task reads its tiles' ``image`` layer and
returns the ids of the sequences with images in the box (ids only: small). The driver drops
the repeats (a sequence crosses many tiles) and, second, hands the sequences out in batches:
each task builds its sequences' tracks from their images (one search per sequence, see
:func:`amly.services.mapillary.download.sequence_entities`) and writes ``OUT/<sequence id>.gpx``
atomically. A track already written is not built again, so a killed worker's batch re-runs
cheaply and a rerun of the whole job resumes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._atomic import atomic_write
from ..errors import AmlyError, APIError
from ..geo import tile_bounds
from ..services.mapillary.download import _points, sequence_entities
from ..services.mapillary.query import UnsafeId, check_sequence_id
from ..services.mapillary.tiles import decode_image_tile, fetch_tile
from .cluster import JobResult, JobSpec, prepare, run_tasks, scheduler_rpc, worker_transport
from .shard import tile_groups

__all__ = ["GpxJobResult", "run_gpx_job"]

#: Sequences per task of the second round.
BATCH = 50


@dataclasses.dataclass
class GpxJobResult(JobResult):
    sequences: int = 0
    written: int = 0
    existing: int = 0
    skipped_user: int = 0
    empty: int = 0
    failures: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def _sequences_task(spec: JobSpec, tiles: list[Any]) -> dict[str, Any]:
    call, _rpc = scheduler_rpc(spec.bank)
    q = spec.query

    async def main() -> list[str]:
        found: set[str] = set()
        async with worker_transport(spec, call) as transport:
            for x, y, z in tiles:
                data = await fetch_tile(transport, x, y, z)
                tw, ts, te, tn = tile_bounds(x, y, z)
                margin = 4 * max(te - tw, tn - ts) / 4096
                w, s, e, n = q.bbox
                for props, lon, lat, _edge in decode_image_tile(data, x, y, z):
                    inside = w - margin <= lon <= e + margin and s - margin <= lat <= n + margin
                    if not inside or not q.filters.matches(props, partial=True):
                        continue
                    try:
                        found.add(check_sequence_id(props.get("sequence_id")))
                    except UnsafeId:
                        continue
        return sorted(found)

    try:
        return {"sequences": asyncio.run(main())}
    except AmlyError as e:
        return {"error": str(e)}


def _tracks_task(spec: JobSpec, seqs: list[str]) -> dict[str, Any]:
    from ..gpx import track_to_gpx

    call, _rpc = scheduler_rpc(spec.bank)
    out = Path(spec.out)
    username = spec.query.filters.username
    counts = {"written": 0, "existing": 0, "skipped_user": 0, "empty": 0}
    failures: list[dict[str, Any]] = []

    async def one(transport: Any, seq: str) -> None:
        path = out / f"{seq}.gpx"
        if path.is_file():
            counts["existing"] += 1
            return
        try:
            ents = await sequence_entities(transport, seq)
        except APIError as e:
            if e.status is None:
                raise
            failures.append({"file": seq, "type": "SequenceError", "error": str(e)})
            return
        if username is not None:
            names = {
                e["creator"].get("username") for e in ents if isinstance(e.get("creator"), dict)
            }
            if username not in names:
                counts["skipped_user"] += 1
                return
        points = _points(ents)
        if not points:
            counts["empty"] += 1
            return
        text = track_to_gpx(points, name=seq)
        data = text.encode() if isinstance(text, str) else text
        await asyncio.to_thread(atomic_write, path, data)
        counts["written"] += 1

    async def main() -> None:
        sem = asyncio.Semaphore(min(16, spec.concurrency))
        async with worker_transport(spec, call) as transport:

            async def bounded(seq: str) -> None:
                async with sem:
                    await one(transport, seq)

            await asyncio.gather(*(bounded(s) for s in seqs))

    try:
        asyncio.run(main())
    except AmlyError as e:
        return {"error": str(e), **counts, "failures": failures}
    return {**counts, "failures": failures}


def run_gpx_job(client: Any, spec: JobSpec) -> GpxJobResult:
    """One GPX file per sequence with images in the box, written by the cluster's workers."""
    t0 = time.monotonic()
    result = GpxJobResult()
    Path(spec.out).mkdir(parents=True, exist_ok=True)
    prepare(client, spec)
    seqs: set[str] = set()

    def groups() -> Iterator[tuple[str, Any, tuple[Any, ...]]]:
        for g in tile_groups(spec.query.bbox, spec.group_zoom):
            result.groups += 1
            result.tiles += len(g.tiles)
            yield g.key, _sequences_task, (spec, [list(t) for t in g.tiles])

    def found(name: str, value: dict[str, Any]) -> None:
        if "error" in value:
            result.errors.append(f"group {name}: {value['error']}")
        seqs.update(value.get("sequences", []))

    prefix = f"amly-gpx-{spec.query_key}"
    run_tasks(client, prefix + "-seq", groups(), found, result, spec.workers)
    result.sequences = len(seqs)
    ordered = sorted(seqs)

    def batches() -> Iterator[tuple[str, Any, tuple[Any, ...]]]:
        for i in range(0, len(ordered), BATCH):
            yield str(i // BATCH), _tracks_task, (spec, ordered[i : i + BATCH])

    def wrote(name: str, value: dict[str, Any]) -> None:
        if "error" in value:
            result.errors.append(f"batch {name}: {value['error']}")
        for k in ("written", "existing", "skipped_user", "empty"):
            setattr(result, k, getattr(result, k) + int(value.get(k, 0)))
        result.failures += value.get("failures", [])

    run_tasks(client, prefix + "-trk", batches(), wrote, result, spec.workers)
    result.seconds = time.monotonic() - t0
    return result
