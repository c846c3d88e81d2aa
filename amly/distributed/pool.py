"""``amly process --dask``: the photos of a tree read and described on a Dask cluster.

:class:`DaskPool` is a :class:`amly.pipeline.Pool` whose chunks run on the cluster's workers
instead of local processes: the same chunking, the same order, the same bounded memory (two
chunks per worker in flight), the same per-file errors. Only reading and describing are
sharded; the sequence logic (time order, splits, duplicates) runs here on each whole folder,
as it must. The files must be at the same paths on every worker (shared storage).

A chunk whose worker died is run again by Dask; one that still fails is read here, so a
lost worker costs time, never a photo.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from ..errors import FileError
from ..pipeline.pool import Pool, _run_chunk, chunk_size

__all__ = ["DaskPool"]

T = TypeVar("T")
R = TypeVar("R")


class DaskPool(Pool):
    """A :class:`~amly.pipeline.Pool` on the workers of a Dask ``client``."""

    def __init__(self, client: Any) -> None:
        workers = len(client.scheduler_info().get("workers", {}))
        super().__init__(max(1, workers))
        self.client = client
        #: Chunks read here because the cluster could not (their worker died twice).
        self.local_chunks = 0

    def close(self) -> None:
        super().close()  # the cluster itself is its owner's to close

    def map(
        self, fn: Callable[[T], R], items: Iterable[T], *, chunk: int | None = None
    ) -> Iterator[R | FileError]:
        items = list(items)
        if not items:
            return
        size = chunk or chunk_size(len(items), self.workers)
        pending: deque[tuple[Any, list[T]]] = deque()
        limit = self.workers * 2
        for i in range(0, len(items), size):
            part = items[i : i + size]
            pending.append((self.client.submit(_run_chunk, fn, part, pure=False), part))
            while len(pending) >= limit:
                yield from self._result(fn, *pending.popleft())
        while pending:
            yield from self._result(fn, *pending.popleft())

    def _result(self, fn: Callable[[T], R], future: Any, part: list[T]) -> list[Any]:
        try:
            return list(future.result())
        except Exception:  # KilledWorker, a lost connection: read the chunk here instead
            self.local_chunks += 1
            return _run_chunk(fn, part)
        finally:
            future.release()
