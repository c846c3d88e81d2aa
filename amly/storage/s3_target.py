"""A bucket prefix as an upload :class:`~amly.services.upload.Target`: ``amly upload TREE
--to s3://bucket/prefix`` stores what would be sent to a service, so a bucket can be a
staging area or an archive.

Layout: ``PREFIX/<sequence>/<photo name>`` (the photo with its description embedded, exactly
the bytes Mapillary would receive), ``PREFIX/<sequence>/mapillary_image_description.json``
(the official description file of the sequence, written last: a sequence is complete once
it is there), zips as ``PREFIX/<file name>``, and each video as it is (not rebuilt) as
``PREFIX/<stem>-<md5 prefix>/<file name>`` with the official description file of that one video
(its ``MAPGPSTrack`` entry, as ``amly process`` writes it) beside it, written last. Zips and
videos above the threshold go in concurrent multipart, resumed from the journal.

Exactly once: every object key is deterministic and each PUT is checked (MD5/ETag), so a
retried PUT replaces identical bytes and never makes a second object; the upload engine's
journal records each stored photo, so a rerun does not send it again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import posixpath
from typing import Any

from ..description import DESCRIPTION_FILE, embeddable
from ..journal import Journal
from ..services.mapillary.upload import file_key, prepare_image
from ..services.upload import SequenceState
from ..types import UploadImage, UploadSequence
from .s3 import S3Client
from .s3_config import S3Config, S3Location
from .s3_multipart import DEFAULT_THRESHOLD, upload_file


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _safe(name: str) -> str:
    """A sequence name as one key segment.

    >>> _safe("drive_01/seq 2"), _safe("../x")
    ('drive_01_seq 2', '.._x')
    """
    return name.replace("/", "_").replace("\\", "_") or "sequence"


def _file_key(state: SequenceState) -> str:
    """The content key of a sequence that is one file (set before it is sent)."""
    key = state.keys[0]
    assert key is not None
    return key


def _video_entry(video: Any, key: str) -> dict[str, Any]:
    """The official description entry of a stored video (what ``amly process`` writes for
    it), its file name relative to the description file beside it."""
    from ..video._describe import track_rows

    entry: dict[str, Any] = {
        "filename": os.path.basename(video.path),
        "md5sum": key[10:42],
        "filetype": video.filetype,
        "filesize": os.path.getsize(video.path),
        "MAPGPSTrack": track_rows(video.points),
    }
    if video.make:
        entry["MAPDeviceMake"] = video.make
    if video.model:
        entry["MAPDeviceModel"] = video.model
    return entry


class S3Target:
    """Uploads into ``s3://bucket/prefix``. Call :meth:`close` after the run (the engine
    opens targets but does not own their connections)."""

    name = "s3"

    def __init__(
        self,
        location: str | S3Location,
        *,
        config: S3Config | None = None,
        journal: str | os.PathLike[str] | None = None,
        concurrency: int = 64,
    ) -> None:
        self.loc = location if isinstance(location, S3Location) else S3Location.parse(location)
        self.config = config or S3Config.from_env()
        self.journal_path = journal
        self.concurrency = concurrency
        self._client: S3Client | None = None

    @property
    def client(self) -> S3Client:
        if self._client is None:
            raise RuntimeError("S3Target used before open()")
        return self._client

    async def open(self) -> str:
        self._client = S3Client(self.config, concurrency=self.concurrency)
        await self._client.__aenter__()
        # A missing bucket, bad keys or a wrong region fail here, before any work.
        listing = self.client.list_objects(self.loc.bucket, self.loc.prefix)
        async for _ in listing:
            break
        await listing.aclose()  # type: ignore[attr-defined]
        return hashlib.md5(f"s3|{self.config.where}|{self.loc}".encode()).hexdigest()[:16]

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.__aexit__(None, None, None)

    def _key(self, state: SequenceState, name: str) -> str:
        return self.loc.join(f"{_safe(state.seq.name)}/{name}")

    def prepare(self, image: UploadImage) -> tuple[str, bytes]:
        return prepare_image(image)

    def _video_key(self, state: SequenceState, name: str) -> str:
        """Videos are keyed by content (two ``GH010001.MP4`` of two cameras stay apart)."""
        video = state.seq.video
        stem = os.path.splitext(os.path.basename(video.path))[0]
        return self.loc.join(f"{_safe(stem)}-{_file_key(state)[10:18]}/{name}")

    def prepare_file(self, seq: UploadSequence) -> tuple[str, int, Any]:
        """A zip or a video as it is (a video is stored, not rebuilt: its track goes in the
        description file beside it, so the bucket can send it on as any processed video)."""
        if seq.video is not None:
            path = seq.video.path
            key, size = file_key(path, os.path.splitext(path)[1].lower() or ".mp4")
            return key, size, path
        assert seq.zip_path is not None
        key, size = file_key(seq.zip_path, os.path.splitext(seq.zip_path)[1] or ".bin")
        return key, size, seq.zip_path

    async def begin(self, state: SequenceState) -> None:
        return None

    async def send(
        self, state: SequenceState, key: str, data: bytes, *, fresh: bool
    ) -> tuple[str, int]:
        index = state.keys.index(key)
        name = os.path.basename(state.seq.images[index].path)
        obj = self._key(state, name)
        await self.client.put(
            self.loc.bucket, obj, data, content_type="image/jpeg", md5=bytes.fromhex(key[10:42])
        )
        return obj, len(data)

    async def send_file(
        self, state: SequenceState, key: str, path: str, size: int
    ) -> tuple[str, int]:
        """``path``: what :meth:`prepare_file` prepared (a zip's or a video's path)."""
        if state.seq.video is not None:
            obj = self._video_key(state, os.path.basename(path))
        else:
            obj = self.loc.join(os.path.basename(path))
        if size <= DEFAULT_THRESHOLD:
            data = await asyncio.to_thread(_read, path)
            await self.client.put(self.loc.bucket, obj, data, md5=bytes.fromhex(key[10:42]))
        else:
            with Journal(self.journal_path) as j:
                await upload_file(self.client, self.loc.bucket, obj, path, journal=j)
        return obj, size

    async def finish(
        self, state: SequenceState, checksum: str, receipts: list[str], file_type: str
    ) -> str:
        if file_type == "zip":
            return f"s3://{self.loc.bucket}/{receipts[0]}"
        entries: list[dict[str, Any]] = []
        video = state.seq.video
        if video is not None:
            obj = self._video_key(state, DESCRIPTION_FILE)
            entries.append(_video_entry(video, _file_key(state)))
        else:
            obj = self._key(state, DESCRIPTION_FILE)
        for image in state.seq.images:
            entry = dict(embeddable(image.description))
            entry["filename"] = os.path.basename(image.path)
            entry["MAPSequenceUUID"] = state.seq.name
            entries.append(entry)
        body = json.dumps(entries, sort_keys=True, separators=(",", ":")).encode()
        await self.client.put(self.loc.bucket, obj, body, content_type="application/json")
        return f"s3://{self.loc.bucket}/{posixpath.dirname(obj)}/"
