"""Concurrent, resumable multipart uploads of large files, streamed from disk.

A file over the threshold goes in parts (:func:`part_size_for`: at least 8 MiB, at most
10,000 parts), ``parts_in_flight`` at a time: each worker reads its part with ``pread`` and
hashes it in one executor hop, PUTs it with a signed ``Content-MD5``, checks the ETag, and
records it in the journal (:mod:`amly.journal`). Memory holds at most ``parts_in_flight``
parts. Each part is retried by the one retry policy.

Resume: the journal keeps the upload id (with the file's size, mtime and part size) and each
finished part's ETag. A rerun asks the server (``ListParts``, paged) which parts it holds and
sends only the others; a part the server has but the journal missed (killed between the two)
is hashed locally and kept if its MD5 is the server's ETag. ``CompleteMultipartUpload`` gets
the parts in ascending order; its 200-with-``<Error>`` answer is an error, and the final ETag
is checked against the MD5 of the part MD5s.

A given-up upload (the file changed or became unreadable, access denied, a part the server
refuses) is aborted, so no orphan parts stay billed. An interrupted one (``kill -9``, Ctrl-C,
a network down beyond the retry policy) is kept for the rerun to resume.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import zlib
from collections.abc import Awaitable, Callable
from xml.sax.saxutils import escape

from ..errors import APIError, AuthError, FileError
from ..journal import Journal, Table
from .s3 import (
    NoSuchUploadError,
    S3Client,
    S3Error,
    _children,
    _etag,
    _gather_all,
    _text,
    _xml,
    check_etag,
    md5_b64,
)

log = logging.getLogger("amly.s3")

MiB = 1024 * 1024
MIN_PART = 5 * MiB
DEFAULT_PART = 8 * MiB
MAX_PARTS = 10_000
#: Files above this size go in parts (s3transfer's default threshold is 8 MiB too).
DEFAULT_THRESHOLD = 16 * MiB
DEFAULT_PARTS_IN_FLIGHT = 8

UPLOAD_TABLE = "s3_multipart"
PART_TABLE = "s3_multipart_parts"


def part_size_for(size: int, minimum: int = DEFAULT_PART) -> int:
    """The part size for a ``size``-byte object: ``minimum`` (>= 5 MiB) unless that would
    need more than 10,000 parts; whole MiB.

    >>> part_size_for(200 * MiB) // MiB
    8
    >>> part_size_for(5 * 1024**4) // MiB   # 5 TiB, S3's largest object
    525
    >>> -(-5 * 1024**4 // part_size_for(5 * 1024**4)) <= MAX_PARTS
    True
    """
    p = max(minimum, MIN_PART, -(-size // MAX_PARTS))
    return -(-p // MiB) * MiB


def composite_etag(md5s: list[bytes]) -> str:
    """S3's ETag of a multipart object: MD5 of the concatenated part MD5s, ``-`` part count.

    >>> composite_etag([hashlib.md5(b"a").digest(), hashlib.md5(b"b").digest()])
    '96e024ba2074fe77e8e965ba43a704be-2'
    """
    return f"{hashlib.md5(b''.join(md5s)).hexdigest()}-{len(md5s)}"


def complete_body(parts: dict[int, str], crc32: dict[int, str] | None = None) -> bytes:
    """The ``CompleteMultipartUpload`` XML, parts in ascending number whatever order they
    finished in (S3 rejects another order; moto does not check, so amly never relies on it).

    >>> complete_body({2: "b", 1: "a"}).count(b"<PartNumber>")
    2
    >>> complete_body({2: "b", 1: "a"}).index(b"<PartNumber>1<") < complete_body({2: "b", 1: "a"}).index(b"<PartNumber>2<")
    True
    """
    crc32 = crc32 or {}
    items = "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>&quot;{escape(parts[n])}&quot;</ETag>"
        + (f"<ChecksumCRC32>{escape(crc32[n])}</ChecksumCRC32>" if n in crc32 else "")
        + "</Part>"
        for n in sorted(parts)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"{items}</CompleteMultipartUpload>"
    ).encode()


@dataclasses.dataclass
class MultipartResult:
    """What one file's upload did. ``parts_sent``: parts PUT by this run; ``parts_reused``:
    parts the server already had from an interrupted run."""

    key: str
    size: int
    etag: str
    parts: int
    part_size: int
    parts_sent: int = 0
    parts_reused: int = 0
    resumed: bool = False


class SourceChanged(FileError):
    """The file changed while it was being uploaded."""

    kind = "MapillaryFileError"


def _read_part(fd: int, offset: int, length: int, algo: str = "md5") -> tuple[bytes, bytes]:
    """Read and hash one part (one executor hop; hashlib and zlib release the GIL)."""
    data = os.pread(fd, length, offset)
    if algo == "crc32":
        return data, (zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "big")
    return data, hashlib.md5(data).digest()


def _read_into(
    fd: int, buf: bytearray, offset: int, length: int, algo: str
) -> tuple[memoryview, bytes]:
    """Read one part into the worker's own buffer (no allocation per part: memory stays at
    one part per worker) and hash it, in one executor hop."""
    view = memoryview(buf)[:length]
    got = os.preadv(fd, [view], offset)
    view = view[:got]
    if algo == "crc32":
        return view, (zlib.crc32(view) & 0xFFFFFFFF).to_bytes(4, "big")
    return view, hashlib.md5(view).digest()


async def upload_file(
    s3: S3Client,
    bucket: str,
    key: str,
    path: str | os.PathLike[str],
    *,
    journal: Journal,
    part_size: int | None = None,
    parts_in_flight: int = DEFAULT_PARTS_IN_FLIGHT,
    content_type: str | None = None,
    on_part: Callable[[int, int], Awaitable[None] | None] | None = None,
    checksum: str | None = None,
) -> MultipartResult:
    """Upload the file at ``path`` to ``s3://bucket/key`` in concurrent parts, resuming an
    interrupted upload recorded in ``journal``. ``on_part(number, bytes)`` is told (and
    awaited) after each part the server acknowledged.

    ``checksum``: ``"md5"`` (default: signed ``Content-MD5``, every part's ETag checked
    against it; works on every S3-compatible store) or ``"crc32"`` (S3's flexible checksums:
    the server verifies a signed ``x-amz-checksum-crc32`` and echoes it; 5x cheaper to
    compute, for stores that implement it: AWS, MinIO...); default: the configuration's."""
    checksum = checksum or s3.config.checksum
    if checksum not in ("md5", "crc32"):
        raise ValueError("checksum is 'md5' or 'crc32'")
    path = os.fspath(path)
    loop = asyncio.get_running_loop()
    st = os.stat(path)
    size = st.st_size
    psize = part_size or part_size_for(size)
    if psize < MIN_PART:
        raise ValueError("S3 parts are at least 5 MiB")
    count = max(1, -(-size // psize))
    if count > MAX_PARTS:
        raise ValueError(f"{count} parts is more than S3's 10,000")
    uploads = journal.table(UPLOAD_TABLE)
    part_table = journal.table(PART_TABLE)
    ident = f"{s3.config.where}|{bucket}|{key}"
    want = {"size": size, "mtime_ns": st.st_mtime_ns, "part_size": psize, "path": path,
            "checksum": checksum}  # fmt: skip
    where = f"s3://{bucket}/{key}"

    done: dict[int, str] = {}
    crcs: dict[int, str] = {}
    result = MultipartResult(key=key, size=size, etag="", parts=count, part_size=psize)
    rec = uploads.get(ident)
    upload_id: str | None = None
    if rec is not None:
        if all(rec.get(k) == v for k, v in want.items()):
            upload_id = rec["upload_id"]
        else:
            # The file or the layout changed: that upload can never complete; drop it.
            await _abort_quietly(s3, bucket, key, rec["upload_id"])
            _forget(uploads, part_table, ident, rec["upload_id"], rec.get("parts", count))

    fd = os.open(path, os.O_RDONLY)
    try:
        if upload_id is not None:
            try:
                server = await list_parts(s3, bucket, key, upload_id)
            except NoSuchUploadError:
                _forget(uploads, part_table, ident, upload_id, count)
                upload_id = None
            else:
                result.resumed = True
                for n, (etag, psz, crc) in server.items():
                    if n > count or psz != _part_len(n, size, psize):
                        continue
                    if checksum == "crc32" and not crc:
                        continue  # the server lost the part's checksum: send it again
                    if part_table.get(f"{upload_id}:{n}") == etag:
                        done[n] = etag
                    else:
                        # Acknowledged by the server but not journaled: trust only the bytes.
                        _, md5 = await loop.run_in_executor(
                            None, _read_part, fd, (n - 1) * psize, psz
                        )
                        if md5.hex() == etag:
                            done[n] = etag
                            part_table.put(f"{upload_id}:{n}", etag)
                    if n in done and crc:
                        crcs[n] = crc
                result.parts_reused = len(done)
        if upload_id is None:
            headers = {"Content-Type": content_type} if content_type else {}
            if checksum == "crc32":
                headers["x-amz-checksum-algorithm"] = "CRC32"
            resp = await s3.request(
                "POST", bucket, key, query=[("uploads", "")], headers=headers,
                what=f"start multipart upload of {where}",
            )  # fmt: skip
            root = _xml(resp.body)
            upload_id = _text(root, "UploadId") if root is not None else ""
            if not upload_id:
                raise S3Error(f"start multipart upload of {where}: no UploadId in the answer")
            uploads.put(ident, {**want, "upload_id": upload_id, "parts": count})

        uid = upload_id
        try:
            await _send_parts(
                s3, bucket, key, uid, fd, size, psize, count, done, part_table,
                parts_in_flight, on_part, path, st.st_mtime_ns, result, checksum, crcs,
            )  # fmt: skip
            etag = await _complete(s3, bucket, key, uid, done, crcs)
        except NoSuchUploadError:
            _forget(uploads, part_table, ident, uid, count)
            raise
        except (FileError, S3Error, AuthError):
            # Given up: abort so no orphan parts stay billed. (An expired token cannot
            # abort either: then the journal keeps the upload for a rerun to finish.) Other
            # errors (the network or server failing beyond the retry policy, Ctrl-C, kill)
            # keep the upload for a rerun to resume.
            if await _abort_quietly(s3, bucket, key, uid):
                _forget(uploads, part_table, ident, uid, count)
            raise
    finally:
        os.close(fd)

    # The composite ETag proves the server assembled exactly our parts, in order.
    digests = [done[n] for n in range(1, count + 1)]
    if all(len(d) == 32 for d in digests) and etag and "-" in etag:
        expected = composite_etag([bytes.fromhex(d) for d in digests])
        if etag != expected:
            raise S3Error(
                f"{where}: the assembled object's ETag {etag} is not the one of the parts sent "
                f"({expected})",
                hint="delete the object and upload it again",
            )
    _forget(uploads, part_table, ident, uid, count)
    result.etag = etag
    return result


def _part_len(n: int, size: int, psize: int) -> int:
    return min(psize, size - (n - 1) * psize)


async def _send_parts(
    s3: S3Client,
    bucket: str,
    key: str,
    upload_id: str,
    fd: int,
    size: int,
    psize: int,
    count: int,
    done: dict[int, str],
    part_table: Table,
    parts_in_flight: int,
    on_part: Callable[[int, int], Awaitable[None] | None] | None,
    path: str,
    mtime_ns: int,
    result: MultipartResult,
    checksum: str,
    crcs: dict[int, str],
) -> None:
    loop = asyncio.get_running_loop()
    pending = iter([n for n in range(1, count + 1) if n not in done])
    where = f"s3://{bucket}/{key}"

    async def worker() -> None:
        buf = bytearray(psize)
        for n in pending:  # one shared iterator: each part is taken by one worker
            length = _part_len(n, size, psize)
            data, digest = await loop.run_in_executor(
                None, _read_into, fd, buf, (n - 1) * psize, length, checksum
            )
            if len(data) != length:
                raise SourceChanged(
                    path,
                    f"the file shrank while it was being uploaded to {where}",
                    hint="upload it again once it is complete",
                )
            resp = await s3.request(
                "PUT",
                bucket,
                key,
                query=[("partNumber", str(n)), ("uploadId", upload_id)],
                headers=(
                    {
                        "x-amz-checksum-crc32": md5_b64(digest),
                        "x-amz-sdk-checksum-algorithm": "CRC32",
                    }
                    if checksum == "crc32"
                    else {"Content-MD5": md5_b64(digest)}
                ),
                body=data,
                unsigned_payload=True,
                what=f"part {n}/{count} of {where}",
            )
            del data
            etag = _etag(resp.headers)
            if checksum == "crc32":
                echoed = resp.headers.get("x-amz-checksum-crc32", "")
                if echoed != md5_b64(digest):
                    raise S3Error(
                        f"part {n} of {where}: the server did not confirm the CRC32 sent "
                        f"({echoed or 'no x-amz-checksum-crc32 in the answer'})",
                        hint="this store may not implement checksums: use the MD5 mode",
                    )
                crcs[n] = echoed
            else:
                check_etag(f"part {n} of {where}", etag, digest.hex(), resp.headers)
            done[n] = etag
            part_table.put(f"{upload_id}:{n}", etag)
            s3.stats["parts_sent"] += 1
            result.parts_sent += 1
            if on_part is not None:
                res = on_part(n, length)
                if res is not None:
                    await res
        st = os.fstat(fd)
        if st.st_size != size or st.st_mtime_ns != mtime_ns:
            raise SourceChanged(
                path,
                f"the file changed while it was being uploaded to {where}",
                hint="upload it again once nothing writes to it",
            )

    await _gather_all([worker() for _ in range(max(1, min(parts_in_flight, count)))])
    # Parts reused from the server were checked against their MD5 or the journal; fill
    # their digests in only when we have them (the final check needs all of them).
    s3.stats["parts_reused"] += result.parts_reused


async def _complete(
    s3: S3Client,
    bucket: str,
    key: str,
    upload_id: str,
    parts: dict[int, str],
    crcs: dict[int, str] | None = None,
) -> str:
    """CompleteMultipartUpload with the ordered list; a retry that finds the upload gone
    (the first attempt completed it) accepts the object if its ETag is the expected one."""
    where = f"s3://{bucket}/{key}"
    body = complete_body(parts, crcs)
    retries_before = s3.stats["retries"]
    try:
        resp = await s3.request(
            "POST", bucket, key, query=[("uploadId", upload_id)], body=body,
            headers={"Content-Type": "application/xml"}, what=f"complete {where}",
        )  # fmt: skip
    except NoSuchUploadError:
        if s3.stats["retries"] == retries_before:
            raise
        head = await s3.head(bucket, key)
        return _etag(head)
    root = _xml(resp.body)
    if root is None or not _text(root, "ETag"):
        raise S3Error(f"complete {where}: the answer carries no ETag")
    return _text(root, "ETag").strip('"')


async def list_parts(
    s3: S3Client, bucket: str, key: str, upload_id: str, *, page_size: int = 1000
) -> dict[int, tuple[str, int, str]]:
    """``{part number: (etag, size, CRC32 or "")}`` the server holds for ``upload_id``
    (every page)."""
    out: dict[int, tuple[str, int, str]] = {}
    marker = "0"
    while True:
        resp = await s3.request(
            "GET", bucket, key,
            query=[("uploadId", upload_id), ("max-parts", str(page_size)),
                   ("part-number-marker", marker)],
            what=f"list parts of s3://{bucket}/{key}",
        )  # fmt: skip
        root = _xml(resp.body)
        if root is None:
            raise S3Error(f"list parts of s3://{bucket}/{key}: the answer is not S3 XML")
        for p in _children(root, "Part"):
            out[int(_text(p, "PartNumber"))] = (
                _text(p, "ETag").strip('"'),
                int(_text(p, "Size") or 0),
                _text(p, "ChecksumCRC32"),
            )
        nxt = _text(root, "NextPartNumberMarker")
        if _text(root, "IsTruncated").lower() != "true" or not nxt or nxt == marker:
            return out
        marker = nxt


async def list_multipart_uploads(
    s3: S3Client, bucket: str, prefix: str = "", *, page_size: int = 1000
) -> list[tuple[str, str]]:
    """``(key, upload id)`` of every open multipart upload under ``prefix`` (every page)."""
    out: list[tuple[str, str]] = []
    key_marker = upload_marker = ""
    while True:
        q = [("uploads", ""), ("prefix", prefix), ("max-uploads", str(page_size))]
        if key_marker:
            q += [("key-marker", key_marker), ("upload-id-marker", upload_marker)]
        resp = await s3.request("GET", bucket, query=q, what=f"list uploads of s3://{bucket}/")
        root = _xml(resp.body)
        if root is None:
            return out
        for u in _children(root, "Upload"):
            out.append((_text(u, "Key"), _text(u, "UploadId")))
        if _text(root, "IsTruncated").lower() != "true":
            return out
        key_marker = _text(root, "NextKeyMarker")
        upload_marker = _text(root, "NextUploadIdMarker")
        if not key_marker:
            return out


async def abort(s3: S3Client, bucket: str, key: str, upload_id: str) -> None:
    await s3.request(
        "DELETE", bucket, key, query=[("uploadId", upload_id)],
        what=f"abort multipart upload of s3://{bucket}/{key}",
    )  # fmt: skip


async def _abort_quietly(s3: S3Client, bucket: str, key: str, upload_id: str) -> bool:
    """Abort; ``False`` (logged) when that failed too."""
    try:
        await abort(s3, bucket, key, upload_id)
    except NoSuchUploadError:
        return True
    except APIError as e:
        log.warning(
            "could not abort the multipart upload of s3://%s/%s (%s); a rerun cleans it up",
            bucket,
            key,
            e.message,
        )
        return False
    return True


def _forget(uploads: Table, parts: Table, ident: str, upload_id: str, count: int) -> None:
    uploads.delete(ident)
    for n in range(1, count + 1):
        parts.delete(f"{upload_id}:{n}")
