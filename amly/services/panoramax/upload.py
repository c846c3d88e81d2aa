"""The Panoramax upload protocol, as a :class:`~amly.services.upload.Target`.

Each sequence amly decided on (its own split and duplicate filtering) becomes one upload set
created with ``no_split``/``no_deduplication``, so the server keeps exactly that sequence. The
engine (:mod:`amly.services.upload`) keeps every photo of every sequence in flight under the
same bounds as Mapillary uploads. The file on disk is sent as it is; where amly's processing
changed its position, time or heading (GPX geotagging, interpolated directions...), the
difference goes as ``override_*`` fields, which the server writes into its copy.

Resume goes through the journal: the set id of each sequence is recorded right after its
creation (a set created by a run that died before recording it is found by its
``metadata.amly_sequence`` among the token's unfinished sets); an unfinished set is reused, the server asked once which files it already holds (by
content md5), and those are not sent again. A 409 (the server has these bytes) is success. A
rejection carries the server's reason and does not keep the set from completing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import threading
from collections.abc import Callable, Iterable
from datetime import timezone
from typing import Any

from ...description import parse_capture_time
from ...errors import APIError, FileError, MetadataError
from ...types import UploadImage, UploadSequence
from ..upload import FileRejected, SequenceState
from .api import PanoramaxAPI

#: Photos in flight at once. A geovisio instance serves a handful of requests at a time (its
#: gunicorn workers x threads); more in flight only queue there (bench/bench_panoramax.py).
DEFAULT_CONCURRENCY = 16
#: Seconds between two looks at a set's preparation with ``wait``.
WAIT_POLL = 0.5
#: ``wait`` gives up on a set whose preparation has not moved for this long (a stuck server
#: queue must not hang the run; the set stays complete and a later ``--wait`` follows it).
WAIT_STALL = 600.0
#: Read timeouts assume at least this upload speed, plus a constant for the server's work.
MIN_UPLOAD_SPEED = 50 * 1024
TIMEOUT_BASE = 30.0


def overrides(image: UploadImage, read: Callable[[str], Any] | None = None) -> dict[str, str]:
    """The ``override_*`` fields for what amly's description says differently from the file's
    own EXIF (nothing for a photo amly did not change: the server then rewrites nothing)."""
    from ...metadata import read_image

    d = image.description
    try:
        meta = (read or read_image)(image.path)
    except Exception:  # unreadable EXIF: say everything we know
        meta = None
    out: dict[str, str] = {}
    lat, lon = d.get("MAPLatitude"), d.get("MAPLongitude")
    if isinstance(lat, (int, float)) and isinstance(lon, (int, float)):
        if (
            meta is None
            or meta.lat is None
            or meta.lon is None
            or abs(meta.lat - lat) > 1e-7
            or abs(meta.lon - lon) > 1e-7
        ):
            out["override_latitude"] = repr(float(lat))
            out["override_longitude"] = repr(float(lon))
    ct = d.get("MAPCaptureTime")
    if isinstance(ct, str):
        t = parse_capture_time(ct)
        if (
            meta is None
            or meta.capture_time is None
            or abs((meta.capture_time - t).total_seconds()) > 0.001
        ):
            iso = t.astimezone(timezone.utc).isoformat(timespec="milliseconds")
            out["override_capture_time"] = iso.replace("+00:00", "Z")
    h = d.get("MAPCompassHeading")
    heading = h.get("TrueHeading") if isinstance(h, dict) else None
    if isinstance(heading, (int, float)):
        if meta is None or meta.heading is None or abs(meta.heading - heading) > 0.01:
            out["override_Exif.GPSInfo.GPSImgDirection"] = f"{int(heading % 360 * 1000)}/1000"
            out["override_Exif.GPSInfo.GPSImgDirectionRef"] = "T"
    return out


def set_title(images: Iterable[UploadImage], fallback: str) -> str:
    """An upload set's title: the folder of its photos (what panoramax-cli uses too).

    >>> set_title([UploadImage("/trips/2024-06-01/IMG_1.jpg", {})], "x")
    '2024-06-01'
    """
    for image in images:
        return os.path.basename(os.path.dirname(os.path.abspath(image.path))) or fallback
    return fallback


@dataclasses.dataclass
class WaitProgress:
    """The server's preparation of the run's sets, all together."""

    prepared: int = 0
    total: int = 0
    broken: int = 0


@dataclasses.dataclass
class SetStatus:
    """Where one upload set ended after ``wait``."""

    set_id: str
    ready: bool = False
    collections: list[str] = dataclasses.field(default_factory=list)
    prepared: int = 0
    broken: int = 0
    rejected: int = 0
    error: str | None = None


class PanoramaxTarget:
    """Uploads to one Panoramax instance through ``api`` (its transport, token and URL)."""

    name = "panoramax"

    def __init__(
        self,
        api: PanoramaxAPI,
        *,
        set_metadata: Callable[[UploadSequence], dict[str, Any]] | None = None,
    ) -> None:
        self.api = api
        #: Extra ``metadata`` of a sequence's upload set (a transfer names its origin there).
        self.set_metadata = set_metadata
        self.scope = ""
        self.configuration: dict[str, Any] = {}
        self.account: dict[str, Any] | None = None
        # per content key, what prepare() learnt for send(): file name and override fields
        self._pending: dict[str, tuple[str, dict[str, str]]] = {}
        self._lock = threading.Lock()
        self._server_has: dict[str, set[str]] = {}

    async def open(self) -> str:
        """Check the instance (``/api/configuration``: Panoramax, recent enough) and the token
        (``/api/users/me``); the journal scope is this instance and this account."""
        self.configuration = await self.api.configuration()
        self.account = await self.api.me()
        who = self.account["id"] if self.account else "anonymous"
        self.scope = hashlib.md5(f"panoramax|{self.api.base}|{who}".encode()).hexdigest()[:16]
        return self.scope

    def prepare(self, image: UploadImage) -> tuple[str, bytes]:
        """In a worker thread: the file's own bytes (their md5 is the server's identity of a
        file, so it is the key) and the overrides for what amly changed."""
        try:
            with open(image.path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise FileError(image.path, f"cannot read: {e.strerror or e}") from e
        if not data:
            raise MetadataError(image.path, "zero-byte file")
        key = hashlib.md5(data).hexdigest()
        fields = overrides(image)
        with self._lock:
            self._pending[key] = (os.path.basename(image.path), fields)
        return key, data

    def prepare_file(self, seq: UploadSequence) -> tuple[str, int, Any]:
        if seq.video is not None:
            raise FileError(
                seq.video.path,
                "Panoramax takes photos, not videos",
                hint="sample frames with `amly sample-video` and upload those",
            )
        raise FileError(
            seq.zip_path or seq.name,
            "Panoramax takes photos, not sequence zips",
            hint="upload the photos' folder",
        )

    async def begin(self, state: SequenceState) -> None:
        """Create the sequence's upload set, recorded at once; an unfinished set of an earlier
        run is reused, and the server asked once which files it holds already."""
        record = state.record
        set_id = record.get("panoramax_set")
        if set_id:
            files = await self.api.upload_set_files(set_id)
            self._server_has[set_id] = {str(f.get("content_md5")) for f in files}
            return
        body = {
            "title": set_title(state.seq.images, state.seq.name),
            "estimated_nb_files": len(state.seq.images),
            "sort_method": "time-asc",
            # amly already split and deduplicated: the server must keep this sequence as is
            "no_split": True,
            "no_deduplication": True,
            "metadata": {
                "amly_sequence": state.seq.name,
                **(self.set_metadata(state.seq) if self.set_metadata else {}),
            },
        }
        # the metadata key is the intent: a set created by a run that died before this record
        # is found by it and reused (its files asked for, as for a recorded set)
        answer = await self.api.create_upload_set(body, key=state.seq.name)
        record["panoramax_set"] = set_id = str(answer["id"])
        state.save()
        if answer.get("nb_items"):
            files = await self.api.upload_set_files(set_id)
            self._server_has[set_id] = {str(f.get("content_md5")) for f in files}

    async def send(
        self, state: SequenceState, key: str, data: bytes, *, fresh: bool
    ) -> tuple[str, int]:
        set_id = state.record["panoramax_set"]
        with self._lock:
            name, fields = self._pending.pop(key, (f"{key}.jpg", {}))
        if key in self._server_has.get(set_id, ()):
            return f"{set_id}/{key}", 0
        answer = await self.api.add_file(
            set_id,
            name,
            data,
            fields,
            timeout=TIMEOUT_BASE + len(data) / MIN_UPLOAD_SPEED,
            on_retry=state.count_retry,
        )
        if answer.status == 409:
            return answer.picture_id or f"{set_id}/{key}", 0
        state.result.bytes_sent += len(data)
        if answer.rejected is not None:
            raise FileRejected(answer.rejected, status=answer.status)
        return answer.picture_id or f"{set_id}/{key}", len(data)

    async def send_file(
        self, state: SequenceState, key: str, prepared: Any, size: int
    ) -> tuple[str, int]:
        raise AssertionError("prepare_file refuses every file")  # never reached

    async def finish(
        self, state: SequenceState, checksum: str, receipts: list[str], file_type: str
    ) -> str:
        """``complete`` the set (idempotent on the server): it dispatches it into a collection."""
        set_id = state.record.get("panoramax_set")
        if not set_id:
            raise APIError("no upload set was created for this sequence", status=400)
        await self.api.complete(set_id)
        self._server_has.pop(set_id, None)
        return str(set_id)

    # -- following the server's preparation -----------------------------------------------------

    async def wait_ready(
        self,
        set_ids: Iterable[str],
        progress: Callable[[WaitProgress], None] | None = None,
        *,
        poll: float = WAIT_POLL,
        stall: float = WAIT_STALL,
    ) -> list[SetStatus]:
        """Follow the sets until the server has dispatched each one and prepared every
        picture (or marked some broken); one status per set."""
        statuses = [SetStatus(s) for s in set_ids]
        seen: dict[str, tuple[int, int, int]] = {}
        loop = asyncio.get_running_loop()

        def notify() -> None:
            if progress is not None:
                w = WaitProgress()
                for p, t, b in seen.values():
                    w.prepared, w.total, w.broken = w.prepared + p, w.total + t, w.broken + b
                progress(w)

        async def follow(st: SetStatus) -> None:
            last: tuple[Any, ...] = ()
            moved = loop.time()
            while True:
                us = await self.api.upload_set(st.set_id)
                items = us.get("items_status") or {}
                st.prepared = int(items.get("prepared") or 0)
                st.broken = int(items.get("broken") or 0)
                st.rejected = int(items.get("rejected") or 0)
                pending = int(items.get("not_processed") or 0) + int(items.get("preparing") or 0)
                total = int(us.get("nb_items") or 0)
                seen[st.set_id] = (st.prepared, total, st.broken)
                notify()
                st.collections = [
                    str(c["id"]) for c in us.get("associated_collections") or [] if "id" in c
                ]
                if us.get("ready"):
                    st.ready = True
                    return
                if st.broken and not pending and us.get("dispatched"):
                    st.error = f"the server could not prepare {st.broken} picture(s)"
                    return
                now = (st.prepared, st.broken, pending, us.get("dispatched"))
                if now != last:
                    last, moved = now, loop.time()
                elif loop.time() - moved > stall:
                    st.error = (
                        f"the server's preparation has not moved in {stall:.0f}s "
                        f"({st.prepared} of {total} ready); rerun with --wait to follow it"
                    )
                    return
                await asyncio.sleep(poll)

        await asyncio.gather(*(follow(st) for st in statuses))
        return statuses
