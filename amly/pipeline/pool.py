"""The process pool: EXIF work runs in worker processes (fork on Linux), chunked, in order,
with bounded memory, and a worker that dies costs a retry, never the run."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import multiprocessing
import os
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, TypeVar

from ..errors import FileError

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def _mp_context() -> Any:
    # fork is by far the cheapest start on Linux (no re-import); elsewhere use the default.
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def _die_with_parent() -> None:
    """Worker start-up: on Linux, ask the kernel to kill this worker when its parent dies,
    so a ``kill -9`` of amly never leaves workers running (and holding its pipes open)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        pass


def _item_path(item: Any) -> str:
    """The file a work item is about (a path, a record with ``path``, or a tuple of those)."""
    if isinstance(item, tuple) and item:
        item = item[0]
    return item if isinstance(item, str) else str(getattr(item, "path", repr(item)))


def _as_file_error(item: Any, e: BaseException) -> FileError:
    if isinstance(e, FileError):
        return e
    path = _item_path(item)
    if isinstance(e, OSError) and e.strerror:
        return FileError(path, f"cannot read the file: {e.strerror}")
    # Not a problem this code knows of: the file is skipped, the run goes on, and the text
    # says it is amly's fault (the exception's own text would mean nothing to a person).
    return FileError(
        path,
        f"could not be processed: an unexpected {type(e).__name__} (a bug in amly)",
        hint="please report it, with this file if you can share it",
        vars={"exception": f"{type(e).__name__}: {e}"[:500]},
    )


def _run_chunk(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """Worker side: ``fn`` over a chunk; a failure becomes a FileError result, never a crash."""
    out: list[Any] = []
    for item in items:
        try:
            out.append(fn(item))
        except Exception as e:  # one bad file must not lose the chunk
            out.append(_as_file_error(item, e))
    return out


def chunk_size(n: int, workers: int, *, lo: int = 4, hi: int = 256) -> int:
    """Items per task: big enough to amortise pickling, small enough to balance the workers.

    >>> chunk_size(5000, 2), chunk_size(10, 2), chunk_size(100, 4)
    (256, 4, 6)
    """
    return max(lo, min(hi, n // (workers * 4) or 1))


class Pool:
    """A process pool that maps a function over items in order with bounded memory.

    At most ``workers * 2`` chunks are in flight, so memory does not grow with the number of
    items. With ``workers <= 1`` (or few items) it runs in this process: no start-up cost.
    A worker that dies (killed, out of memory) costs a retry, never the run: see
    :meth:`_recover`.
    Use as a context manager; reuse it across folders to pay the start-up once.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers if workers is not None else default_workers()
        self._executor: cf.ProcessPoolExecutor | None = None

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    @property
    def executor(self) -> cf.ProcessPoolExecutor:
        if self._executor is None:
            self._executor = cf.ProcessPoolExecutor(
                self.workers, mp_context=_mp_context(), initializer=_die_with_parent
            )
        return self._executor

    def _chunks(self, items: list[T], chunk: int | None) -> Iterator[list[T]]:
        size = chunk or chunk_size(len(items), self.workers)
        for i in range(0, len(items), size):
            yield items[i : i + size]

    def _inline(self, n: int) -> bool:
        return self.workers <= 1 or n < 8

    def map(
        self, fn: Callable[[T], R], items: Iterable[T], *, chunk: int | None = None
    ) -> Iterator[R | FileError]:
        """``fn(item)`` for each item, in order; exceptions come back as FileError values.

        ``fn`` must be picklable (a module-level function or a ``functools.partial`` of one).
        """
        items = list(items)
        if self._inline(len(items)):
            yield from _run_chunk(fn, items)
            return
        pending: deque[tuple[cf.Future[list[Any]], list[T]]] = deque()
        limit = self.workers * 2
        for part in self._chunks(items, chunk):
            pending.append((self._submit(fn, part), part))
            while len(pending) >= limit:
                yield from self._result(fn, *pending.popleft())
        while pending:
            yield from self._result(fn, *pending.popleft())

    def _submit(self, fn: Callable[[T], R], part: list[T]) -> cf.Future[list[Any]]:
        try:
            return self.executor.submit(_run_chunk, fn, part)
        except cf.process.BrokenProcessPool:
            self._discard()
            return self.executor.submit(_run_chunk, fn, part)

    def _result(
        self, fn: Callable[[T], R], future: cf.Future[list[Any]], part: list[T]
    ) -> list[Any]:
        try:
            return future.result()
        except cf.process.BrokenProcessPool:
            return self._recover(fn, part)

    def _discard(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _recover(self, fn: Callable[[T], R], part: list[T]) -> list[Any]:
        """A worker died (killed, out of memory...): retry the chunk in a fresh pool; if that
        dies too, read its files one per throwaway process so only the culprit fails."""
        self._discard()
        try:
            return self.executor.submit(_run_chunk, fn, part).result()
        except cf.process.BrokenProcessPool:
            self._discard()
        out: list[Any] = []
        for item in part:
            with cf.ProcessPoolExecutor(1, mp_context=_mp_context()) as one:
                try:
                    out.extend(one.submit(_run_chunk, fn, [item]).result())
                except cf.process.BrokenProcessPool:
                    out.append(
                        FileError(
                            _item_path(item),
                            "the worker process died on this file (out of memory, or killed)",
                            hint="the other files went on; retry it alone to see if it repeats",
                        )
                    )
        return out

    async def amap(
        self, fn: Callable[[T], R], items: Iterable[T], *, chunk: int | None = None
    ) -> AsyncIterator[list[R | FileError]]:
        """Asyncio flavour of :meth:`map`, yielding one finished chunk (a list) at a time, so
        the event loop keeps running (uploads proceed) while the workers read."""
        items = list(items)
        if self._inline(len(items)):
            loop = asyncio.get_running_loop()
            for part in self._chunks(items, chunk or 16):
                yield await loop.run_in_executor(None, _run_chunk, fn, part)
            return
        loop = asyncio.get_running_loop()
        pending: deque[tuple[asyncio.Future[list[Any]], list[T]]] = deque()
        limit = self.workers * 2

        async def result(future: asyncio.Future[list[Any]], part: list[T]) -> list[Any]:
            try:
                return await future
            except cf.process.BrokenProcessPool:
                return await loop.run_in_executor(None, self._recover, fn, part)

        for part in self._chunks(items, chunk):
            try:
                fut = loop.run_in_executor(self.executor, _run_chunk, fn, part)
            except cf.process.BrokenProcessPool:
                self._discard()
                fut = loop.run_in_executor(self.executor, _run_chunk, fn, part)
            pending.append((fut, part))
            while len(pending) >= limit:
                yield await result(*pending.popleft())
        while pending:
            yield await result(*pending.popleft())
