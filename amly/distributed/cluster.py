"""Run a box's download on a Dask cluster: one keyed task per tile group, every worker running
amly's own asyncio engine (:func:`amly.distributed.tilejob.run_tiles`) on its groups.

- ``--dask local:N`` starts a :class:`~distributed.LocalCluster` of N worker processes;
  ``--dask tcp://host:8786`` joins a running scheduler (the workers need amly installed and
  the output folder mounted at the same path).
- The per-token rate limits hold across the cluster: the token bank
  (:class:`~amly.distributed.limiter.LimiterPlugin`) runs on the scheduler.
- A worker that dies mid-group: Dask runs the group again elsewhere (and this driver
  resubmits a group that failed that way, up to :data:`RESUBMITS` times); the tile markers
  make the re-run skip finished tiles and reuse stored images. A rerun of the whole job
  resumes the same way.
- Progress is the whole job's: workers report per-tile counts to the scheduler, which keeps
  the highest count per tile (a re-run tile does not count twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..config import Endpoints, Secret
from ..errors import AmlyError, APIError, UsageError
from ..net import Limits, Transport
from ..services.mapillary.download import INDEX_FILE, geojson_chunks
from ..storage import open_sink
from .limiter import (
    PLUGIN_NAME,
    Caller,
    LimiterPlugin,
    TokenBank,
    bank_key,
    bank_spec,
    local_caller,
    shared_limiters,
)
from .markers import TileMarkers, query_key
from .shard import GROUP_ZOOM, ShardSpec, TileGroup, tile_groups
from .tilejob import TileQuery, TileStats, run_tiles

__all__ = ["JobResult", "JobSpec", "connect", "run_job", "run_shard"]

log = logging.getLogger("amly.distributed")

#: How often a group that lost its worker is submitted again by the driver.
RESUBMITS = 3
#: Seconds between progress reports (workers) and polls (driver).
PROGRESS_EVERY = 0.5


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs to download its groups (pickled to the workers)."""

    endpoints: Endpoints
    token: Secret
    query: TileQuery
    out: str
    limits: Limits = dataclasses.field(default_factory=Limits)
    concurrency: int = 32
    workers: int = 1
    group_zoom: int = GROUP_ZOOM

    @property
    def query_key(self) -> str:
        return query_key(self.query.to_json())

    @property
    def bank(self) -> str:
        return bank_key(self.endpoints.graph, self.token.reveal())

    @property
    def job(self) -> str:
        return f"{self.query_key}-{Path(self.out).resolve()}"


@dataclasses.dataclass
class JobResult:
    """Whole-job counts (summed over workers) and the output's index."""

    stats: TileStats = dataclasses.field(default_factory=TileStats)
    groups: int = 0
    tiles: int = 0
    tiles_unfinished: int = 0
    resubmitted: int = 0
    index: str | None = None
    seconds: float = 0.0
    errors: list[str] = dataclasses.field(default_factory=list)

    @property
    def requests_per_image(self) -> float | None:
        n = self.stats.images
        return round(self.stats.requests / n, 4) if n else None


async def _run_groups(
    spec: JobSpec, tiles: Iterable[Any], call: Caller, on_image: Callable[[str], None] | None
) -> TileStats:
    # Never ``sink.open()`` here: it clears temp files, which other workers may be writing.
    sink = open_sink(spec.out)
    markers = TileMarkers(sink, spec.query_key)
    async with worker_transport(spec, call) as transport:
        return await run_tiles(
            transport,
            sink,
            markers,
            (tuple(t) for t in tiles),
            spec.query,
            concurrency=spec.concurrency,
            on_image=on_image,
        )


def scheduler_rpc(bank: str) -> tuple[Caller, Callable[..., Any]]:
    """On a worker, inside a task: ``(call, rpc)``: ``call`` reaches the token bank ``bank``
    (a :data:`Caller` for the shared limiters), ``rpc(op, kw)`` any ``amly_*`` handler. Both
    are awaited on the task's own event loop; the round trip runs on the worker's."""
    from distributed import get_worker

    worker = get_worker()
    loop = worker.loop.asyncio_loop  # type: ignore[attr-defined]

    async def _rpc(op: str, kw: dict[str, Any]) -> Any:
        return await getattr(worker.scheduler, f"amly_{op}")(**kw)

    async def rpc(op: str, kw: dict[str, Any]) -> Any:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_rpc(op, kw), loop))

    async def call(op: str, **kw: Any) -> Any:
        return await rpc(op, {"bank": bank, **kw})

    return call, rpc


def worker_transport(spec: JobSpec, call: Caller) -> Transport:
    """A transport whose per-surface limiters draw on the shared bank (enter it first)."""
    t = Transport(spec.endpoints, spec.token, concurrency=spec.concurrency + 8, limits=spec.limits)
    t.limiters = shared_limiters(spec.limits, call, workers=spec.workers)  # type: ignore[assignment]
    return t


def _group_task(spec: JobSpec, tiles: list[Any]) -> dict[str, Any]:
    """A Dask task: one group's tiles, on a worker, against the scheduler's token bank.

    Returns the stats as a dict (amly's errors are reported, not raised: the driver decides;
    a worker dying raises on the driver's side instead)."""
    call, rpc = scheduler_rpc(spec.bank)
    job = spec.job
    counts: dict[str, int] = {}
    sent: dict[str, int] = {}

    def on_image(key: str) -> None:
        counts[key] = counts.get(key, 0) + 1

    async def flush() -> None:
        news = {k: v for k, v in counts.items() if sent.get(k) != v}
        if news:
            sent.update(news)
            await rpc("progress", {"job": job, "counts": news})

    async def main() -> TileStats:
        async def report() -> None:
            while True:
                await asyncio.sleep(PROGRESS_EVERY)
                with contextlib.suppress(Exception):
                    await flush()

        reporter = asyncio.ensure_future(report())
        try:
            return await _run_groups(spec, tiles, call, on_image)
        finally:
            reporter.cancel()
            with contextlib.suppress(BaseException):
                await reporter
            with contextlib.suppress(Exception):
                await flush()

    try:
        stats = asyncio.run(main())
    except AmlyError as e:
        return {"error": str(e), "kind": type(e).__name__}
    return {"stats": dataclasses.asdict(stats)}


def connect(scheduler: str) -> tuple[Any, Any]:
    """``(client, cluster)`` for ``local:N`` (a new LocalCluster of N worker processes, the
    cluster to close afterwards) or a scheduler address (``tcp://host:8786``; cluster None)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UsageError("--dask needs Dask distributed", hint="pip install 'amly[dask]'") from None
    if not log.isEnabledFor(logging.DEBUG):
        # The scheduler of a LocalCluster runs in this process: its INFO lines are not ours.
        logging.getLogger("distributed").setLevel(logging.WARNING)
    if scheduler.startswith("local:"):
        try:
            n = int(scheduler.removeprefix("local:"))
        except ValueError:
            n = 0
        if n < 1:
            raise UsageError(f"bad --dask {scheduler!r}: local:N needs N >= 1 workers")
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        return Client(cluster), cluster
    if "://" not in scheduler:
        raise UsageError(
            f"bad --dask {scheduler!r}: give local:N or a scheduler address tcp://HOST:PORT"
        )
    try:
        return Client(scheduler, timeout="20s"), None
    except OSError as e:
        raise APIError(
            f"cannot reach the Dask scheduler at {scheduler}: {e}",
            hint="is 'dask scheduler' running there, and reachable from here?",
        ) from None


def _open_bank(dask_scheduler: Any, key: str, spec: dict[str, Any]) -> None:
    dask_scheduler.plugins[PLUGIN_NAME].open_bank(key, spec)


def _progress(dask_scheduler: Any, job: str) -> int:
    return sum(dask_scheduler.plugins[PLUGIN_NAME].progress.get(job, {}).values())


def _forget_progress(dask_scheduler: Any, job: str) -> None:
    dask_scheduler.plugins[PLUGIN_NAME].progress.pop(job, None)


def _stats(d: dict[str, Any]) -> TileStats:
    return TileStats(**d)


async def _write_index(spec: JobSpec, groups: Iterable[TileGroup], result: JobResult) -> None:
    """``index.geojson`` from the markers of every tile of ``groups`` (streamed through a part
    file in the sink's local state folder); a tile without a marker counts as unfinished."""
    sink = open_sink(spec.out)
    markers = TileMarkers(sink, spec.query_key)
    part = sink.state_dir / f"index.{spec.query_key}.part.jsonl"
    part.parent.mkdir(parents=True, exist_ok=True)
    f = await asyncio.to_thread(open, part, "wb")
    try:
        for g in groups:
            for t in g.tiles:
                result.tiles += 1
                entry = await markers.get(t)
                if entry is None:
                    result.tiles_unfinished += 1
                    continue
                lines = (json.dumps(x, separators=(",", ":")) for x in entry.get("features", []))
                f.write("".join(line + "\n" for line in lines).encode())
    finally:
        f.close()
    await sink.put_stream(INDEX_FILE, geojson_chunks(part))
    part.unlink()
    await sink.close()
    result.index = f"{sink.location.rstrip('/')}/{INDEX_FILE}"


async def _open(spec: JobSpec) -> None:
    """Open the output once for the whole job, after checking that the images already in it
    (which a re-run reuses by name) were downloaded at the size this job asks for."""
    sink = open_sink(spec.out)
    await sink.open()
    try:
        size = spec.query.size
        for other, where in await asyncio.to_thread(_sizes_in, sink.state_dir):
            if other != size:
                raise UsageError(
                    f"{spec.out} holds images downloaded at size {other} ({where}); this job "
                    f"asks for {size}, and would reuse them by name",
                    hint="download into another --out, or use the same --size",
                )
        marker = f".amly/tiles/{spec.query_key}.json"
        if not await sink.exists(marker):
            await sink.put(marker, json.dumps({"query": spec.query.to_json()}).encode())
    finally:
        await sink.close()


def _sizes_in(state_dir: Path) -> list[tuple[str, str]]:
    """The thumbnail sizes earlier jobs stored in an output: its plain download manifest's
    query and every distributed query recorded beside the tile markers."""
    from ..journal import Journal
    from ..services.mapillary.download import MANIFEST_FILE

    found = []
    manifest = state_dir / MANIFEST_FILE
    if manifest.is_file():
        journal = Journal(manifest)
        try:
            query = journal.table("download_query").get("query")
        finally:
            journal.close()
        if isinstance(query, dict) and query.get("size"):
            found.append((str(query["size"]), "an earlier 'amly download images'"))
    for q in sorted((state_dir / "tiles").glob("*.json")):
        try:
            size = json.loads(q.read_bytes())["query"]["size"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        found.append((str(size), "an earlier --dask/--shard job"))
    return found


def run_tasks(
    client: Any,
    prefix: str,
    tasks: Iterator[tuple[str, Callable[..., Any], tuple[Any, ...]]],
    done: Callable[[str, Any], None],
    result: JobResult,
    workers: int,
    poll: Callable[[], None] | None = None,
) -> None:
    """Run ``(name, fn, args)`` tasks on the cluster, at most two per worker submitted at a
    time (a country's groups are never all in memory), each under a stable key. A task whose
    worker died is submitted again (up to :data:`RESUBMITS` times); ``done(name, value)`` is
    told of each result; ``poll()`` is called between waits."""
    from distributed import wait

    window = max(2, 2 * workers)
    running: dict[Any, tuple[str, Callable[..., Any], tuple[Any, ...], int]] = {}

    def submit(name: str, fn: Callable[..., Any], args: tuple[Any, ...], attempt: int) -> None:
        key = f"{prefix}-{name.replace('/', '-')}-{attempt}"
        running[client.submit(fn, *args, key=key, pure=False)] = (name, fn, args, attempt)

    def top_up() -> None:
        while len(running) < window:
            item = next(tasks, None)
            if item is None:
                return
            submit(*item, 0)

    top_up()
    while running:
        try:
            finished, _ = wait(list(running), timeout=PROGRESS_EVERY, return_when="FIRST_COMPLETED")
        except TimeoutError:
            finished = set()
        for fut in finished:
            name, fn, args, attempt = running.pop(fut)
            try:
                value = fut.result()
            except Exception as e:  # a worker died (KilledWorker) or the comm broke
                if attempt < RESUBMITS:
                    result.resubmitted += 1
                    submit(name, fn, args, attempt + 1)
                else:
                    result.errors.append(f"task {name}: {type(e).__name__}: {e}")
                continue
            finally:
                fut.release()
            done(name, value)
        top_up()
        if poll is not None:
            poll()


def prepare(client: Any, spec: JobSpec) -> None:
    """Install the scheduler plugin (once per scheduler) and open the job's token bank."""
    client.register_plugin(LimiterPlugin(), name=PLUGIN_NAME)
    client.run_on_scheduler(_open_bank, key=spec.bank, spec=bank_spec(spec.limits))


def run_job(
    client: Any,
    spec: JobSpec,
    *,
    shard: ShardSpec | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> JobResult:
    """Download the query's groups (``shard``'s share, if given) on the cluster behind
    ``client``; write ``index.geojson`` from the tile markers. Groups are submitted a few per
    worker at a time, so a country's tens of thousands of groups never sit in memory."""
    t0 = time.monotonic()
    result = JobResult()
    asyncio.run(_open(spec))
    prepare(client, spec)
    client.run_on_scheduler(_forget_progress, job=spec.job)

    def groups() -> Iterator[TileGroup]:
        for g in tile_groups(spec.query.bbox, spec.group_zoom):
            if shard is None or shard.owns(g.group):
                yield g

    def tasks() -> Iterator[tuple[str, Any, tuple[Any, ...]]]:
        for g in groups():
            result.groups += 1
            yield g.key, _group_task, (spec, [list(t) for t in g.tiles])

    def done(_name: str, out: dict[str, Any]) -> None:
        if "error" in out:
            result.errors.append(f"group {_name}: {out['error']}")
        else:
            result.stats.add(_stats(out["stats"]))

    last = -1

    def poll() -> None:
        nonlocal last
        if on_progress is not None:
            n = client.run_on_scheduler(_progress, job=spec.job)
            if n != last:
                on_progress(n)
                last = n

    run_tasks(client, f"amly-{spec.query_key}", tasks(), done, result, spec.workers, poll)
    client.run_on_scheduler(_forget_progress, job=spec.job)
    asyncio.run(_write_index(spec, groups(), result))
    result.seconds = time.monotonic() - t0
    return result


def run_shard(
    spec: JobSpec,
    shard: ShardSpec | None = None,
    *,
    on_progress: Callable[[int], None] | None = None,
) -> JobResult:
    """The same job in this process, without a cluster: ``shard``'s groups (all of them if
    None), the token bank local. For ``--shard K/N`` on N machines: each output merges into
    one with ``amly download merge``."""
    t0 = time.monotonic()
    result = JobResult()
    bank = TokenBank(bank_spec(spec.limits))
    chosen = [
        g
        for g in tile_groups(spec.query.bbox, spec.group_zoom)
        if shard is None or shard.owns(g.group)
    ]
    result.groups = len(chosen)
    done = 0

    def on_image(_key: str) -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done)

    call = local_caller(bank)

    async def main() -> TileStats:
        await _open(spec)
        if spec.query.method == "search":  # one group at a time, each searched as a whole
            stats = TileStats()
            for g in chosen:
                stats.add(await _run_groups(spec, list(g.tiles), call, on_image))
        else:
            tiles = (t for g in chosen for t in g.tiles)
            stats = await _run_groups(spec, tiles, call, on_image)
        await _write_index(spec, chosen, result)
        return stats

    result.stats = asyncio.run(main())
    result.seconds = time.monotonic() - t0
    return result
