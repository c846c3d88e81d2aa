"""Scanning: which files under the given paths are photos, folder by folder, in a
deterministic order (roots as given, folders depth-first by name, files by name)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator

IMAGE_SUFFIXES = (".jpg", ".jpeg")
TEMP_PREFIX = ".amly-"


def is_image_name(name: str) -> bool:
    """A JPEG by name: ``.jpg``/``.jpeg`` in any case; hidden files and our temps are not.

    >>> [is_image_name(n) for n in ["a.JPG", "b.jpeg", ".c.jpg", ".amly-x.jpg", "d.png"]]
    [True, True, False, False, False]
    """
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


@dataclasses.dataclass
class Folder:
    """One directory's images (not its subfolders'), in name order, and the root it came from."""

    root: str
    path: str
    files: list[str]


def scan(paths: Iterable[str | os.PathLike[str]], *, recursive: bool = True) -> list[Folder]:
    """Every folder with JPEGs under ``paths`` (directories or single files), deterministic
    order: roots in the given order, then folders depth-first by name, files by name.

    Hidden files and folders (``.name``) are skipped, which also skips amly's ``.amly-*``
    temporary files. A path that does not exist raises ``FileNotFoundError``.
    """
    folders: list[Folder] = []
    seen: set[str] = set()
    for p in paths:
        path = os.path.abspath(os.fspath(p))
        if os.path.isfile(path):
            folders.append(Folder(path, os.path.dirname(path), [path]))
            continue
        if not os.path.isdir(path):
            raise FileNotFoundError(path)
        for folder in (Folder(d, d, files) for d, files in walk(path, recursive)):
            if folder.path not in seen:
                seen.add(folder.path)
                folder.root = path
                folders.append(folder)
    return folders


def walk(
    top: str, recursive: bool, want: Callable[[str], bool] = is_image_name
) -> Iterator[tuple[str, list[str]]]:
    """``(folder, files)`` for every folder under ``top`` holding files whose name ``want``
    accepts (photos by default): folders depth-first by name, files by name; hidden ones
    skipped, linked folders not followed."""
    # Depth-first with a stack, not recursion: a tree nested deeper than Python's recursion
    # limit (a broken or hostile card) must not crash the scan.
    stack = [top]
    while stack:
        path = stack.pop()
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError:
            continue
        files = [e.path for e in entries if want(e.name) and _is_file(e)]
        if files:
            yield path, files
        if recursive:
            subs = [e.path for e in entries if not e.name.startswith(".") and _is_real_dir(e)]
            stack.extend(reversed(subs))  # popped in name order


def _is_file(entry: os.DirEntry[str]) -> bool:
    """A regular file (or a link to one). A link that cannot be resolved because it loops
    (``x.jpg -> x.jpg``) counts as a file: reading it then fails with a per-file error
    that names the loop, instead of the scan failing for the whole folder."""
    try:
        return entry.is_file()
    except OSError:
        return True


def _is_real_dir(entry: os.DirEntry[str]) -> bool:
    # Linked folders are not followed: a link to a parent would loop forever.
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def scan_files(paths: Iterable[str | os.PathLike[str]], *, recursive: bool = True) -> list[str]:
    """All image paths of :func:`scan`, flattened."""
    return [f for folder in scan(paths, recursive=recursive) for f in folder.files]
