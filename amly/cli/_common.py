"""What every verb shares: common options, the progress bar, the summary and its exit code,
and running a coroutine on the fastest event loop available."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from collections.abc import Coroutine
from typing import Any, TextIO, TypeVar

from ..errors import AmlyError, FileError

T = TypeVar("T")


def flags(options: tuple[str, ...]) -> str:
    """The command-line flags of library option names.

    >>> flags(("offset_time", "max_gap"))
    '--offset-time, --max-gap'
    """
    return ", ".join("--" + o.replace("_", "-") for o in options)


def cli_hint(e: AmlyError) -> str | None:
    """An error's hint with the flags that concern it (the library names options only)."""
    if not e.options:
        return e.hint
    see = f"see {flags(e.options)}"
    return f"{e.hint}; {see}" if e.hint else see


def describe_error(e: AmlyError) -> str:
    """An error as one line for a person: message, hint and flags (never a traceback)."""
    text = f"{e.path}: {e.message}" if isinstance(e, FileError) else e.message
    hint = cli_hint(e)
    return f"{text} ({hint})" if hint else text


class Progress:
    """A one-line progress bar on stderr, drawn only on a terminal and at most 10 times/s."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self._start = time.monotonic()
        self._last = 0.0

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.1 or self.done == self.total):
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.done / max(now - self._start, 1e-9)
        if self.total:
            frac = min(1.0, self.done / self.total)
            bar = "#" * int(frac * 30)
            text = f"\r{self.label} [{bar:<30}] {self.done}/{self.total} {rate:,.0f}/s"
        else:
            text = f"\r{self.label} {self.done} {rate:,.0f}/s"
        self.stream.write(text)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()


@dataclasses.dataclass
class Summary:
    """Counts and failures of a run; :meth:`emit` prints it and returns the exit code."""

    verb: str
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    failures: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    started: float = dataclasses.field(default_factory=time.monotonic)

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def fail(
        self, error: FileError | str, path: str | None = None, kind: str | None = None
    ) -> None:
        """Record one failed file (it does not stop the run)."""
        if isinstance(error, FileError):
            self.failures.append(
                {
                    "file": error.path,
                    "type": error.kind,
                    "error": error.message,
                    "hint": cli_hint(error),
                }
            )
        else:
            self.failures.append({"file": path, "type": kind or "error", "error": error})
        self.count("failed")

    #: Exit code of a run whose only failures are upload sets the server marked broken.
    BROKEN_SETS = 6

    @property
    def exit_code(self) -> int:
        if not self.failures:
            return 0
        if all(f.get("type") == "broken upload set" for f in self.failures):
            return self.BROKEN_SETS
        return 1

    def emit(self, args: argparse.Namespace) -> int:
        elapsed = time.monotonic() - self.started
        if getattr(args, "json", False):
            out = {
                "verb": self.verb,
                "ok": not self.failures,
                "counts": self.counts,
                "failures": self.failures,
                "seconds": round(elapsed, 3),
                **self.info,
            }
            print(json.dumps(out, indent=2, default=str))
        elif not getattr(args, "quiet", False):
            parts = ", ".join(_human(k, v) for k, v in self.counts.items())
            print(f"{self.verb}: {parts or 'nothing to do'} in {elapsed:.1f}s", file=sys.stderr)
            for f in self.failures[:50]:
                hint = f" -> {f['hint']}" if f.get("hint") else ""
                print(f"  {f['file']}: {f['error']}{hint}", file=sys.stderr)
            if len(self.failures) > 50:
                print(f"  ... and {len(self.failures) - 50} more (see --json)", file=sys.stderr)
        else:
            for f in self.failures:
                print(f"{f['file']}: {f['error']}", file=sys.stderr)
        return self.exit_code


def _human(key: str, value: int) -> str:
    """A count as a person reads it: byte counts in MB, the others as they are.

    >>> _human("bytes_sent", 59_109_788), _human("images", 284)
    ('59.1 MB sent', '284 images')
    """
    if key == "bytes" or key.startswith("bytes_"):
        rest = key[len("bytes") :].lstrip("_").replace("_", " ")
        return f"{value / 1e6:,.1f} MB{' ' + rest if rest else ''}"
    return f"{value} {key.replace('_', ' ')}"


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop where available (``AMLY_LOOP=asyncio`` forces the default)."""
    if os.environ.get("AMLY_LOOP", "uvloop") == "uvloop":
        try:
            import uvloop

            return uvloop.run(coro)
        except ImportError:
            pass
    return asyncio.run(coro)
