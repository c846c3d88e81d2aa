"""Atomic file replacement: the one way amly writes a file that must never be half-written.

Temp file in the same directory, fsync, rename over the target, fsync the directory. A crash
at any moment leaves either the old file or the new one, never a mix. The target's
permission bits are kept when it already exists.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable

from .errors import FileError


def atomic_write(path: str | os.PathLike[str], chunks: bytes | Iterable[bytes]) -> None:
    """Replace ``path`` with ``chunks`` atomically.

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); p = os.path.join(d, "f")
    >>> atomic_write(p, b"new"); open(p, "rb").read()
    b'new'
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        mode: int | None = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = None
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".amly-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(chunks, (bytes, bytearray, memoryview)):
                f.write(chunks)
            else:
                for chunk in chunks:
                    f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def fsync_dir(directory: str) -> None:
    """Make a rename durable (no-op where directories cannot be opened)."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def move_file(src: str, dst: str) -> None:
    """Move ``src`` to ``dst`` atomically without ever replacing an existing ``dst``.

    ``os.link`` fails if ``dst`` exists (no check-then-rename race); across filesystems, where
    links are impossible, it falls back to a rename after an existence check.
    """
    os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
    try:
        os.link(src, dst)
    except FileExistsError:
        raise FileError(
            src, f"not moved: {dst} already exists", hint="move or rename that file first"
        ) from None
    except OSError:
        if os.path.lexists(dst):
            raise FileError(src, f"not moved: {dst} already exists") from None
        os.rename(src, dst)
        return
    os.unlink(src)
