"""Bounded concurrency, the one way amly runs many network jobs at once: memory stays flat
however large the job, because every stream is pulled lazily through bounded queues.

* :func:`bounded_map`: a stream through an async function, at most N in flight (downloads,
  entity lookups);
* :func:`fanout`: work items whose handling may yield more work (a search cell split in four)
  at most N in flight, depth first;
* :class:`ByteBudget`: bytes held in memory at once (uploads of multi-MB photos);
* :func:`prefetch`: a producer run ahead of its consumer through a bounded buffer
  (processing keeps going while uploads wait for a slot).

>>> import asyncio
>>> async def main():
...     async def src():
...         for i in range(5):
...             yield i
...     async def double(i):
...         return 2 * i
...     return sorted([x async for x in bounded_map(src(), double, 2)])
>>> asyncio.run(main())
[0, 2, 4, 6, 8]
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["ByteBudget", "bounded_map", "drain", "fanout", "prefetch"]


class ByteBudget:
    """Bytes in memory at once, for one producer: :meth:`acquire` waits while the budget is
    spent; an item larger than the whole budget still goes, alone (never a deadlock).

    >>> async def main():
    ...     b = ByteBudget(10)
    ...     await b.acquire(8)
    ...     waiter = asyncio.ensure_future(b.acquire(5))
    ...     await asyncio.sleep(0)
    ...     blocked = not waiter.done()
    ...     b.release(8)
    ...     await waiter
    ...     return blocked, b.used
    >>> asyncio.run(main())
    (True, 5)
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._freed = asyncio.Event()

    async def acquire(self, n: int) -> None:
        while self.used and self.used + n > self.limit:
            self._freed.clear()
            await self._freed.wait()
        self.used += n

    def release(self, n: int) -> None:
        self.used -= n
        self._freed.set()


async def _aclose(source: AsyncIterator[Any]) -> None:
    # Close a source now (its own workers stop), not whenever it is collected.
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        await aclose()


async def drain(out: asyncio.Queue[tuple[str, Any]]) -> AsyncIterator[Any]:
    """The consumer side of a worker queue: ``("item", x)`` yields x, ``("error", e)`` raises
    e, ``("done", None)`` ends."""
    while True:
        kind, value = await out.get()
        if kind == "item":
            yield value
        elif kind == "error":
            raise value
        else:
            return


async def bounded_map(
    source: AsyncIterator[T],
    fn: Callable[[T], Awaitable[R]],
    concurrency: int,
) -> AsyncIterator[R]:
    """Apply ``fn`` to a stream with at most ``concurrency`` in flight (results unordered)."""
    sem = asyncio.Semaphore(concurrency)
    out: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=concurrency * 2)
    running: set[asyncio.Task[None]] = set()

    async def one(item: T) -> None:
        try:
            await out.put(("item", await fn(item)))
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            await out.put(("error", e))
        finally:
            sem.release()

    async def feed() -> None:
        try:
            async for item in source:
                await sem.acquire()
                t = asyncio.ensure_future(one(item))
                running.add(t)
                t.add_done_callback(running.discard)
            for _ in range(concurrency):
                await sem.acquire()  # wait for every job
            await out.put(("done", None))
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # noqa: BLE001
            await out.put(("error", e))
        finally:
            await _aclose(source)

    feeder = asyncio.ensure_future(feed())
    try:
        async for value in drain(out):
            yield value
    finally:
        feeder.cancel()
        for t in list(running):
            t.cancel()
        await asyncio.gather(feeder, *running, return_exceptions=True)


async def fanout(
    seeds: Iterable[T],
    handle: Callable[[T], Awaitable[tuple[list[R], list[T]]]],
    *,
    concurrency: int,
    buffer: int,
) -> AsyncIterator[R]:
    """Run ``handle`` over work items with at most ``concurrency`` in flight, streaming the
    results through a bounded queue. A handler returns results and more work (a split cell),
    which goes before the remaining ``seeds``; seeds are pulled lazily, so a box of a million
    cells never becomes a million-item list."""
    seed_iter = iter(seeds)
    seeds_left = True
    spawned: list[T] = []  # depth-first: split cells are finished before new seeds start
    out: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=max(1, buffer))
    busy = 0
    cond = asyncio.Condition()

    def next_item() -> tuple[bool, T | None]:
        nonlocal seeds_left
        if spawned:
            return True, spawned.pop()
        if seeds_left:
            for item in seed_iter:
                return True, item
            seeds_left = False
        return False, None

    async def worker() -> None:
        nonlocal busy
        while True:
            async with cond:
                while True:
                    ok, item = next_item()
                    if ok or busy == 0:
                        break
                    await cond.wait()  # a busy worker may still split its cell
                if ok:
                    busy += 1
                else:
                    cond.notify_all()  # the others see it too
            if not ok:
                await out.put(("done", None))
                return
            try:
                results, more = await handle(item)  # type: ignore[arg-type]
            except BaseException as e:  # noqa: BLE001 - handed to the consumer
                if isinstance(e, asyncio.CancelledError):
                    raise
                await out.put(("error", e))
                return
            for r in results:
                await out.put(("item", r))
            async with cond:
                spawned.extend(more)
                busy -= 1
                cond.notify_all()

    tasks = [asyncio.ensure_future(worker()) for _ in range(max(1, concurrency))]
    try:
        async for value in drain(out):
            yield value
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def prefetch(source: AsyncIterator[T], size: int) -> AsyncIterator[T]:
    """``source`` run ahead in its own task, up to ``size`` items buffered: a producer that
    works in the background (the process pool reading the next folders) keeps working while
    the consumer waits on something else (upload slots), instead of only when pulled.

    >>> async def main():
    ...     async def src():
    ...         for i in range(3):
    ...             yield i
    ...     return [x async for x in prefetch(src(), 2)]
    >>> asyncio.run(main())
    [0, 1, 2]
    """
    out: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=max(1, size))

    async def feed() -> None:
        try:
            async for item in source:
                await out.put(("item", item))
            await out.put(("done", None))
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            await out.put(("error", e))
        finally:
            await _aclose(source)

    feeder = asyncio.ensure_future(feed())
    try:
        async for value in drain(out):
            yield value
    finally:
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
