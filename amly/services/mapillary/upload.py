"""The Mapillary upload protocol, as a :class:`~amly.services.upload.Target`.

Per image: the description is injected into the JPEG bytes in memory (the file on disk is
untouched), the session key is ``mly_tools_<md5 of those bytes>.jpg``; the client asks the
server for its offset and POSTs the rest, getting a file handle. Per sequence: a manifest of
the handles in capture order is uploaded and ``finish_upload`` turns it into a cluster. A zip
of a sequence is one upload finished as ``file_type=zip``; a video is rebuilt as a CAMM MP4
(streamed from the source, never whole in memory) and finished as ``mly_camm_video``.

A retry always asks the server where to resume, so bytes the server has are never sent twice;
the manifest key is derived from the sequence's checksum, and the server finishes a manifest
only once, so a resumed finish never makes a second cluster.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import aiohttp

from ...description import dumps, embeddable
from ...errors import APIError, FileError, MetadataError
from ...net import Retry, Transport
from ...net.transport import decode_json, error_from_response
from ...types import UploadImage
from ..upload import SequenceState
from .auth import me

#: Read timeouts assume at least this upload speed (the official tool's 50 KiB/s) ...
MIN_UPLOAD_SPEED = 50 * 1024
#: ... plus this constant for the round trip and server processing.
TIMEOUT_BASE = 20.0
FILE_CHUNK = 1 << 20


def session_key(data: bytes, suffix: str = ".jpg") -> str:
    """The content-addressed session key of exactly these bytes.

    >>> session_key(b"abc")
    'mly_tools_900150983cd24fb0d6963f7d28e17f72.jpg'
    """
    return f"mly_tools_{hashlib.md5(data).hexdigest()}{suffix}"


def manifest_bytes(handles: Iterable[str]) -> bytes:
    """The manifest of a sequence: compact JSON, sorted keys, handles in capture order.

    >>> manifest_bytes(["h0", "h1"])
    b'{"image_handles":["h0","h1"],"upload_type":"images","version":"1"}'
    """
    doc = {"image_handles": list(handles), "upload_type": "images", "version": "1"}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def manifest_key(scope: str, checksum: str) -> str:
    """A manifest session key derived from the sequence, so that a retried or resumed finish
    re-uses the same manifest (and the server's finish stays idempotent).

    >>> k = manifest_key("s", "c"); k.startswith("uuid_") and k.endswith(".json") and len(k)
    42
    """
    return f"uuid_{hashlib.md5(f'{scope}|{checksum}'.encode()).hexdigest()}.json"


def read_timeout(nbytes: int) -> float:
    """Seconds allowed for sending ``nbytes``: the floor speed plus a constant.

    >>> read_timeout(0), read_timeout(50 * 1024 * 10)
    (20.0, 30.0)
    """
    return TIMEOUT_BASE + nbytes / MIN_UPLOAD_SPEED


def prepare_image(image: UploadImage) -> tuple[str, bytes]:
    """Read an image and embed its description in memory: ``(session key, bytes)``.
    Runs in a worker thread (file reads and md5 release the GIL)."""
    from ...metadata import inject_description

    if image.path.startswith("s3://"):
        from ...storage.s3_source import read_object

        raw = read_object(image.path)  # in a worker thread: one GET, nothing on local disk
    else:
        try:
            with open(image.path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise FileError(image.path, f"cannot read: {e.strerror or e}") from e
    if not raw:
        raise MetadataError(image.path, "zero-byte file")
    data = inject_description(raw, dumps(embeddable(image.description)))
    return session_key(data), data


def file_key(path: str, suffix: str = ".zip") -> tuple[str, int]:
    """The session key and size of a large file, hashed in chunks (bounded memory)."""
    md5 = hashlib.md5()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(FILE_CHUNK):
            md5.update(chunk)
            size += len(chunk)
    return f"mly_tools_{md5.hexdigest()}{suffix}", size


async def file_chunks(path: str, offset: int) -> AsyncIterator[bytes]:
    """The file's bytes from ``offset``, read in a thread chunk by chunk (bounded memory)."""
    f = await asyncio.to_thread(open, path, "rb")
    try:
        await asyncio.to_thread(f.seek, offset)
        while chunk := await asyncio.to_thread(f.read, FILE_CHUNK):
            yield chunk
    finally:
        f.close()


class MapillaryTarget:
    """Uploads to Mapillary (or an amly server) through ``transport``: resumable uploads,
    manifests, ``finish_upload``."""

    name = "mapillary"

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.scope = ""

    async def open(self) -> str:
        """The journal scope: the upload service plus the account (checks the token)."""
        user = await me(self.transport)
        ident = f"{self.transport.endpoints.upload}|{user['id']}"
        self.scope = hashlib.md5(ident.encode()).hexdigest()[:16]
        return self.scope

    def prepare(self, image: UploadImage) -> tuple[str, bytes]:
        return prepare_image(image)

    def file_key(self, path: str) -> tuple[str, int]:
        return file_key(path, ".zip")

    def video_key(self, video: Any) -> tuple[str, int, Any]:
        """The CAMM rebuild of a video, its md5 session key and size (a full read)."""
        from ...video._upload import video_key

        return video_key(video)

    async def send_video(
        self, state: SequenceState, key: str, prepared: Any, size: int
    ) -> tuple[str, int]:
        from ...video._upload import layout_chunks

        return await self._resumable(
            key, size, lambda offset: layout_chunks(prepared, offset), state
        )

    async def begin(self, state: SequenceState) -> None:
        return None  # a Mapillary sequence exists only once it is finished

    async def send(
        self, state: SequenceState, key: str, data: bytes, *, fresh: bool
    ) -> tuple[str, int]:
        view = memoryview(data)
        return await self._resumable(key, len(data), lambda offset: view[offset:], state, fresh)

    async def send_file(
        self, state: SequenceState, key: str, path: str, size: int
    ) -> tuple[str, int]:
        return await self._resumable(key, size, lambda offset: file_chunks(path, offset), state)

    async def finish(
        self, state: SequenceState, checksum: str, receipts: list[str], file_type: str
    ) -> str:
        """Manifest (for images) then ``finish_upload``; the manifest key and handle are
        recorded before the finish, so a rerun finishes the same manifest."""
        record = state.record
        if file_type != "images":  # a zip or a video: one upload, finished as it is
            record["handle"] = receipts[0] if receipts else record.get("handle")
        else:
            record["manifest_key"] = record.get("manifest_key") or (
                f"uuid_{uuid.uuid4().hex}.json"  # --reupload: a new cluster, a new manifest
                if state.reupload
                else manifest_key(self.scope, checksum)
            )
            state.save()
            record["handle"], _sent = await self.send(
                state, record["manifest_key"], manifest_bytes(receipts), fresh=False
            )
        state.save()
        kind = "mly_bundle_manifest" if file_type == "images" else file_type
        return await self._finish_upload(record["handle"], kind, state.seq.organization_id)

    async def _finish_upload(self, handle: str, file_type: str, org: str | None) -> str:
        body: dict[str, Any] = {"file_handle": handle, "file_type": file_type}
        if org:
            body["organization_id"] = org
        answer = await self.transport.graph_post("finish_upload", body)
        cluster = answer.get("cluster_id") if isinstance(answer, dict) else None
        if cluster is None:
            raise APIError(f"finish_upload answered without a cluster_id: {answer!r:.200}")
        return str(cluster)

    # -- the resumable protocol ---------------------------------------------------------------

    async def _fetch_offset(self, session: aiohttp.ClientSession, url: str) -> int:
        self.transport.stats["requests"] += 1
        async with session.get(
            url,
            headers=self.transport.auth_headers(),
            timeout=aiohttp.ClientTimeout(total=self.transport.timeout),
        ) as resp:
            if resp.status >= 400:
                raise await error_from_response(resp)
            payload = decode_json(await resp.read(), resp.status)
        offset = payload.get("offset") if isinstance(payload, dict) else None
        if not isinstance(offset, int) or offset < 0:
            raise Retry(f"bad offset answer: {payload!r:.100}")
        return offset

    async def _resumable(
        self,
        key: str,
        size: int,
        body_at: Callable[[int], Any],
        state: SequenceState,
        fresh: bool = False,
    ) -> tuple[str, int]:
        """Ask the server's offset, send the rest from there. Every retry asks again, so
        bytes the server has are never sent twice; a retry after which the offset grew
        restores the attempt budget (the upload is advancing). ``fresh``: the first POST
        starts at 0 without asking (a server that has bytes anyway answers 412, and the retry
        asks). Returns the file handle and the bytes sent (0: the server had them all)."""
        url = f"{self.transport.endpoints.upload}/{key}"
        session = self.transport.session_for(url)
        seen = {"offset": -1, "moved": False, "sent": 0}

        async def attempt(n: int) -> str:
            offset = 0 if fresh and n == 0 else await self._fetch_offset(session, url)
            if offset > size:
                raise APIError(f"server holds more of {key} than its {size} bytes", status=409)
            if offset > seen["offset"] >= 0:
                seen["moved"] = True
            seen["offset"] = max(seen["offset"], offset)
            left = size - offset
            headers = {
                **self.transport.auth_headers(),
                "Offset": str(offset),
                "X-Entity-Name": key,
                "Content-Type": "application/octet-stream",
            }
            self.transport.stats["bytes_sent"] += left
            state.result.bytes_sent += left
            seen["sent"] += left
            return await self._post(session, url, body_at(offset), headers, left)

        def progressed() -> bool:
            moved, seen["moved"] = seen["moved"], False
            return bool(moved)

        handle = await self.transport.retrying(
            attempt,
            surface="upload",
            what=f"upload of {key}",
            on_retry=state.count_retry,
            progressed=progressed,
        )
        return handle, int(seen["sent"])

    async def _post(
        self,
        session: aiohttp.ClientSession,
        url: str,
        body: Any,
        headers: dict[str, str],
        size: int,
    ) -> str:
        async with session.post(
            url,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=read_timeout(size)),
        ) as resp:
            if resp.status >= 400:
                raise await error_from_response(resp)
            payload = decode_json(await resp.read(), resp.status)
        handle = payload.get("h") if isinstance(payload, dict) else None
        if not isinstance(handle, str) or not handle:
            raise Retry(f"upload answer without a handle: {payload!r:.100}")
        return handle
