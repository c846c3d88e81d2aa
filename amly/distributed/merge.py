"""``amly download merge DIR... --out DIR``: shard outputs merged into one folder and index.

Each input is a download output (``index.geojson`` plus ``<sequence>/<image>.jpg``), such as
the N folders of ``--shard 1/N`` ... ``--shard N/N`` runs. The merge brings every indexed
image into ``--out`` (a hard link where the filesystems allow, else an atomic copy; a file
already there at the same size is kept) and writes one ``index.geojson`` with each image
once. An image an input indexes but does not hold is reported, never silently dropped.
Inputs are read one feature at a time: memory holds the set of ids seen, nothing more.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .._atomic import atomic_write
from ..errors import UsageError
from ..services.mapillary.download import geojson_chunks

__all__ = ["MergeResult", "merge_outputs", "read_index"]

_CHUNK = 1 << 20


@dataclasses.dataclass
class MergeResult:
    inputs: int = 0
    images: int = 0
    linked: int = 0
    copied: int = 0
    kept: int = 0
    duplicates: int = 0
    failures: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    index: str | None = None


def read_index(path: Path) -> Iterator[dict[str, Any]]:
    """The features of an ``index.geojson``: line by line when it has amly's one-feature-a-
    line layout, else parsed whole (any other valid GeoJSON)."""
    with open(path, "rb") as f:
        head = f.readline()
        if head.strip() != b'{"type":"FeatureCollection","features":[':
            f.seek(0)
            doc = json.load(f)
            yield from doc.get("features", []) if isinstance(doc, dict) else []
            return
        for line in f:
            line = line.strip().rstrip(b",")
            if not line or line == b"]}":
                continue
            yield json.loads(line)


def _copy(src: Path, dst: Path) -> str:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        if dst.exists():
            dst.unlink()  # a different size: replace (never reached for the same file)
        os.link(src, dst)
        return "linked"
    except OSError:

        def chunks() -> Iterator[bytes]:
            with open(src, "rb") as f:
                while block := f.read(_CHUNK):
                    yield block

        atomic_write(dst, chunks())
        return "copied"


def _safe_rel(rel: object) -> str | None:
    """A feature's ``path`` if it stays inside its folder (``<sequence>/<image>.jpg``)."""
    if not isinstance(rel, str) or not rel or rel.startswith(("/", "\\")):
        return None
    parts = Path(rel).parts
    return rel if len(parts) >= 1 and ".." not in parts else None


def merge_outputs(
    inputs: Iterable[str | os.PathLike[str]], out: str | os.PathLike[str]
) -> MergeResult:
    """Merge download outputs into ``out`` (which may be one of the inputs)."""
    dirs = [Path(d) for d in inputs]
    if not dirs:
        raise UsageError("nothing to merge: give at least one download folder")
    for d in dirs:
        if not (d / "index.geojson").is_file():
            raise UsageError(
                f"{d}: no index.geojson here",
                hint="give the --out folders of finished 'amly download images' runs",
            )
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = MergeResult(inputs=len(dirs))
    seen: set[int | str] = set()
    part = out_dir / ".amly" / "merge.part.jsonl"
    part.parent.mkdir(parents=True, exist_ok=True)
    with open(part, "wb") as index:
        for d in dirs:
            for feat in read_index(d / "index.geojson"):
                props = feat.get("properties") if isinstance(feat, dict) else None
                ident = str(props.get("id")) if isinstance(props, dict) else ""
                rel = _safe_rel(props.get("path")) if isinstance(props, dict) else None
                if not ident or rel is None:
                    result.failures.append(
                        {"file": str(d / "index.geojson"), "type": "IndexError",
                         "error": f"a feature without a usable id or path: {str(feat)[:120]}"}
                    )  # fmt: skip
                    continue
                key: int | str = int(ident) if ident.isdigit() else ident
                if key in seen:
                    result.duplicates += 1
                    continue
                src, dst = d / rel, out_dir / rel
                try:
                    size = src.stat().st_size
                except FileNotFoundError:
                    result.failures.append(
                        {"file": str(src), "type": "MissingImage",
                         "error": f"{d}/index.geojson lists image {ident}, but {src} is missing"}
                    )  # fmt: skip
                    continue
                seen.add(key)
                if dst.exists() and (dst.samefile(src) or dst.stat().st_size == size):
                    result.kept += 1
                elif _copy(src, dst) == "linked":
                    result.linked += 1
                else:
                    result.copied += 1
                result.images += 1
                index.write(json.dumps(feat, separators=(",", ":")).encode() + b"\n")

    chunks = geojson_chunks(part)
    path = out_dir / "index.geojson"
    atomic_write(path, chunks)
    part.unlink()
    result.index = str(path)
    return result
