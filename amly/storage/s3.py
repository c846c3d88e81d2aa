"""An asyncio S3 client over aiohttp with amly's own SigV4 (:mod:`amly.storage.sigv4`).

What amly needs from object storage and nothing more: lazy paginated listing (one page of
1,000 keys in memory, however large the prefix), ranged GET (EXIF from the head of an
object), PUT (many small objects in flight), and concurrent multipart uploads of large files
(:mod:`amly.storage.s3_multipart`). Every request goes through the one retry policy
(:func:`amly.net.retry.with_retries`); S3's XML errors are mapped to amly's errors with a
message that says what to do: a missing bucket, access denied, a wrong region, an expired
session token.

Integrity: every PUT and part carries a signed ``Content-MD5`` (the server refuses a body
that does not match) and the returned ETag is compared with it. The payload itself is sent
``UNSIGNED-PAYLOAD``: the signed MD5 already binds the body to the signature, so the body is
hashed once (MD5) instead of twice (MD5 + SHA-256).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import logging
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any, TypeVar

import aiohttp
import yarl

from ..errors import APIError, AuthError, MetadataError
from ..net.retry import Retry, RetryPolicy, with_retries
from .s3_config import S3Config, S3Location
from .sigv4 import EMPTY_SHA256, UNSIGNED_PAYLOAD, quote_path, sign, signing_key

log = logging.getLogger("amly.s3")

T = TypeVar("T")
#: A request body: bytes, or a view of a reused buffer (multipart parts).
Buffer = bytes | bytearray | memoryview

USER_AGENT = "amly/0.1"
#: Bytes read from the head of an object to find its EXIF (amly's reader needs 32 KiB; a
#: larger APP1 segment costs one more ranged GET).
HEAD_BYTES = 64 * 1024
#: Read timeouts assume at least this transfer speed, plus a constant for the round trip.
MIN_SPEED = 50 * 1024
TIMEOUT_BASE = 20.0


# -- errors ------------------------------------------------------------------------------------


class S3Error(APIError):
    """S3 answered with an error amly will not retry. ``s3_code`` is S3's ``<Code>``."""

    def __init__(self, message: str, *, s3_code: str = "", status: int | None = None,
                 hint: str | None = None) -> None:  # fmt: skip
        super().__init__(message, status=status, hint=hint)
        self.s3_code = s3_code


class S3AuthError(AuthError):
    """Credentials missing, wrong, expired, or not allowed to do this (exit code 3)."""

    def __init__(self, message: str, *, s3_code: str = "", status: int | None = None,
                 hint: str | None = None) -> None:  # fmt: skip
        super().__init__(message, status=status, hint=hint)
        self.s3_code = s3_code


class NoSuchBucketError(S3Error):
    """The bucket does not exist (bad input: exit code 2)."""

    exit_code = 2


class WrongRegionError(S3Error):
    """The bucket lives in another region than the one requests are signed for (exit 2)."""

    exit_code = 2


class NoSuchKeyError(S3Error):
    """The object does not exist."""


class NoSuchUploadError(S3Error):
    """The multipart upload id is unknown: completed or aborted already."""


class EmptyPrefixError(S3Error):
    """A prefix given as a source holds no objects (bad input: exit code 2)."""

    exit_code = 2


_AUTH_HINTS = {
    "ExpiredToken": "the session token has expired: refresh the temporary credentials "
    "(AWS_SESSION_TOKEN / aws_session_token) and rerun",
    "TokenRefreshRequired": "the session token has expired: refresh the temporary credentials "
    "and rerun",
    "InvalidToken": "the session token is malformed or belongs to other keys: set "
    "AWS_SESSION_TOKEN from the same credentials as AWS_ACCESS_KEY_ID",
    "InvalidAccessKeyId": "the access key id is unknown to this endpoint: check "
    "AWS_ACCESS_KEY_ID / the profile, and the endpoint",
    "SignatureDoesNotMatch": "the secret access key does not match the access key id: check "
    "AWS_SECRET_ACCESS_KEY / the profile",
    "AccessDenied": "these credentials may not do this: ask for s3:GetObject, s3:PutObject, "
    "s3:ListBucket (and s3:AbortMultipartUpload) on the bucket",
    "AllAccessDisabled": "all access to this bucket has been disabled by its owner",
}
_RETRY_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "OperationAborted",
        "Throttling",
        "ThrottlingException",
    }
)


def classify_s3(
    status: int,
    code: str,
    message: str,
    *,
    what: str,
    region: str,
    headers: Mapping[str, str] | None = None,
    where: str = "",
) -> Exception:
    """The exception for an S3 error response: :class:`Retry` or a fatal amly error.

    >>> isinstance(classify_s3(503, "SlowDown", "", what="PUT", region="r"), Retry)
    True
    >>> e = classify_s3(400, "ExpiredToken", "The provided token has expired.", what="GET s3://b/k",
    ...                 region="r")
    >>> type(e).__name__, e.exit_code, "refresh" in e.hint
    ('S3AuthError', 3, True)
    >>> e = classify_s3(301, "PermanentRedirect", "", what="GET s3://b/", region="us-east-1",
    ...                 headers={"x-amz-bucket-region": "eu-central-1"})
    >>> type(e).__name__, e.hint
    ('WrongRegionError', 'set AWS_REGION=eu-central-1 (or the profile region)')
    >>> classify_s3(404, "NoSuchBucket", "", what="GET s3://nope/", region="r").exit_code
    2
    """
    headers = headers or {}
    text = f"{what}: {code or f'HTTP {status}'}" + (f" ({message})" if message else "")
    if code in _RETRY_CODES or status >= 500 or status == 429:
        return Retry(text, rate_limited=code in ("SlowDown", "Throttling"), wait=None)
    actual = headers.get("x-amz-bucket-region") or headers.get("X-Amz-Bucket-Region")
    if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraint"
                ) or status == 301 or (actual and actual != region and status in (301, 400, 403)):  # fmt: skip
        hint = (
            f"set AWS_REGION={actual} (or the profile region)"
            if actual
            else "set AWS_REGION to the bucket's region (or the profile region)"
        )
        return WrongRegionError(
            f"{what}: the bucket is not in region {region}"
            + (f" but in {actual}" if actual else ""),
            s3_code=code,
            status=status,
            hint=hint,
        )
    if code in _AUTH_HINTS or status in (401, 403):
        return S3AuthError(
            text,
            s3_code=code,
            status=status,
            hint=_AUTH_HINTS.get(code, _AUTH_HINTS["AccessDenied"]),
        )
    if code == "NoSuchBucket":
        return NoSuchBucketError(
            f"{what}: the bucket does not exist" + (f" at {where}" if where else ""),
            s3_code=code,
            status=status,
            hint="check the bucket name, the endpoint (--s3-endpoint / AWS_ENDPOINT_URL) "
            "and the region; create the bucket first",
        )
    if code in ("NoSuchKey", "NotFound") or status == 404:
        return NoSuchKeyError(f"{what}: no such object", s3_code=code, status=status)
    if code == "NoSuchUpload":
        return NoSuchUploadError(
            f"{what}: the multipart upload is gone", s3_code=code, status=status
        )
    return S3Error(text, s3_code=code, status=status)


def parse_error(body: bytes) -> tuple[str, str]:
    """``(Code, Message)`` of an S3 XML error body (``("", "")`` when it is not one).

    >>> parse_error(b"<Error><Code>NoSuchKey</Code><Message>gone</Message></Error>")
    ('NoSuchKey', 'gone')
    >>> parse_error(b"not xml")
    ('', '')
    """
    root = _xml(body)
    if root is None or _local(root.tag) != "Error":
        return "", ""
    return _text(root, "Code"), _text(root, "Message")[:300]


def _xml(body: bytes) -> ET.Element | None:
    if not body or not body.lstrip().startswith(b"<"):
        return None
    try:
        return ET.fromstring(body)
    except ET.ParseError:
        return None


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _children(el: ET.Element, name: str) -> Iterable[ET.Element]:
    return (c for c in el if _local(c.tag) == name)


def _text(el: ET.Element, name: str) -> str:
    for c in el:
        if _local(c.tag) == name:
            return c.text or ""
    return ""


# -- objects -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class S3Object:
    """One listed object."""

    key: str
    size: int
    etag: str
    last_modified: str = ""


@dataclasses.dataclass
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


def md5_b64(digest: bytes) -> str:
    """The ``Content-MD5`` header value of an MD5 digest.

    >>> md5_b64(hashlib.md5(b"").digest())
    '1B2M2Y8AsgTpgAmY7PhCfg=='
    """
    return base64.b64encode(digest).decode()


def _etag(headers: Mapping[str, str]) -> str:
    return (headers.get("ETag") or headers.get("etag") or "").strip('"')


class S3Client:
    """``async with S3Client(S3Config.from_env()) as s3: ...``.

    ``concurrency`` bounds open connections; callers bound their own work on top (the
    multipart engine: parts in flight; :meth:`put_many`: objects in flight).
    """

    def __init__(
        self,
        config: S3Config,
        *,
        concurrency: int = 64,
        policy: RetryPolicy | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.config = config
        self.policy = policy or RetryPolicy()
        self.concurrency = concurrency
        self.timeout = timeout
        self._session = session
        self._own_session = session is None
        self._key_cache: tuple[str, bytes] | None = None
        self._reached = False
        #: Counters for summaries, tests and benchmarks.
        self.stats: dict[str, int] = {
            "requests": 0,
            "retries": 0,
            "bytes_sent": 0,
            "bytes_received": 0,
            "parts_sent": 0,
            "parts_reused": 0,
            "objects_put": 0,
        }

    async def __aenter__(self) -> S3Client:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=0),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
                headers={"User-Agent": USER_AGENT},
                skip_auto_headers=("Content-Type",),
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    # -- the one request path ----------------------------------------------------------------

    def url(self, bucket: str, key: str = "") -> str:
        """The wire URL of ``key`` in ``bucket`` (path already percent-encoded)."""
        base = self.config.base_url(bucket)
        return f"{base}/{quote_path(key)}" if key else f"{base}/"

    def _signing_key(self, date: str) -> bytes:
        cached = self._key_cache
        if cached is not None and cached[0] == date:
            return cached[1]
        k = signing_key(self.config.credentials.secret_key, date, self.config.region)
        self._key_cache = (date, k)
        return k

    def signed_headers(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        payload_hash: str,
        now: datetime | None = None,
    ) -> dict[str, str]:
        """``headers`` signed for ``url`` (wire form) at ``now`` (default: the clock)."""
        now = now or datetime.now(timezone.utc)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        return sign(
            method,
            url,
            headers,
            self.config.credentials,
            self.config.region,
            amz_date,
            payload_hash,
            key=self._signing_key(amz_date[:8]),
        )

    async def request(
        self,
        method: str,
        bucket: str,
        key: str = "",
        *,
        query: Iterable[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        body: Buffer = b"",
        unsigned_payload: bool = False,
        ok: tuple[int, ...] = (200, 204, 206),
        what: str | None = None,
        timeout: float | None = None,
        progressed: Callable[[], bool] | None = None,
    ) -> Response:
        """One logical request, signed afresh on every attempt, under the one retry policy.
        A 200 whose body is an S3 ``<Error>`` (CompleteMultipartUpload, CopyObject) is an
        error too."""
        if self._session is None:
            raise RuntimeError("S3Client used outside 'async with'")
        session = self._session
        url = self.url(bucket, key)
        q = list(query)
        if q:
            from .sigv4 import canonical_query

            url = f"{url}?{canonical_query(q)}"
        target = yarl.URL(url, encoded=True)
        payload_hash = (
            UNSIGNED_PAYLOAD
            if unsigned_payload
            else (hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256)
        )
        label = what or f"{method} s3://{bucket}/{key}"
        base_headers = dict(headers or {})
        if body or method in ("PUT", "POST"):
            base_headers["Content-Length"] = str(len(body))
        limit = timeout or (TIMEOUT_BASE + len(body) / MIN_SPEED if body else self.timeout)

        async def attempt(n: int) -> Response:
            hdrs = self.signed_headers(method, url, base_headers, payload_hash)
            self.stats["requests"] += 1
            try:
                async with session.request(
                    method,
                    target,
                    data=_body(body, method),
                    headers=hdrs,
                    timeout=aiohttp.ClientTimeout(total=limit),
                ) as resp:
                    raw = await resp.read()
                    status = resp.status
                    rheaders = resp.headers
            except aiohttp.ClientConnectorError as e:
                if not self._reached and n + 1 >= self.policy.first_contact_attempts:
                    raise APIError(
                        f"cannot connect to the S3 endpoint {e.host}:{e.port}: "
                        f"{e.os_error or type(e).__name__}",
                        hint="is the server running? check --s3-endpoint / AWS_ENDPOINT_URL "
                        "and the network",
                    ) from None
                raise
            self._reached = True
            self.stats["bytes_sent"] += len(body)
            self.stats["bytes_received"] += len(raw)
            if status in ok:
                code = ""
                if status == 200 and method == "POST" and raw[:200].lstrip().startswith(b"<"):
                    code, message = parse_error(raw)
                if not code:
                    return Response(status, rheaders, raw)
            else:
                code, message = parse_error(raw)
                if method == "HEAD" and status == 404:
                    code = code or "NotFound"
            raise classify_s3(
                status,
                code,
                message,
                what=label,
                region=self.config.region,
                headers=rheaders,
                where=self.config.where,
            )

        async def on_retry(n: int, err: BaseException, wait: float) -> None:
            self.stats["retries"] += 1
            log.debug("retry %d of %s after %.2fs: %s", n, label, wait, err)

        return await with_retries(
            attempt, self.policy, on_retry=on_retry, what=label, progressed=progressed
        )

    # -- reading -----------------------------------------------------------------------------

    async def list_objects(self, bucket: str, prefix: str = "") -> AsyncIterator[S3Object]:
        """Every object under ``prefix``, in key order, one page (1,000 keys) at a time."""
        token: str | None = None
        while True:
            q = [("list-type", "2"), ("prefix", prefix), ("max-keys", "1000")]
            if token:
                q.append(("continuation-token", token))
            resp = await self.request("GET", bucket, query=q, what=f"list s3://{bucket}/{prefix}")
            root = _xml(resp.body)
            if root is None:
                raise S3Error(f"list s3://{bucket}/{prefix}: the answer is not S3 XML")
            for c in _children(root, "Contents"):
                yield S3Object(
                    key=_text(c, "Key"),
                    size=int(_text(c, "Size") or 0),
                    etag=_text(c, "ETag").strip('"'),
                    last_modified=_text(c, "LastModified"),
                )
            token = _text(root, "NextContinuationToken")
            if _text(root, "IsTruncated").lower() != "true" or not token:
                return

    async def list_dir(self, bucket: str, prefix: str) -> tuple[list[S3Object], list[str]]:
        """One "folder": the objects directly under ``prefix`` and its sub-prefixes (a
        ``/``-delimited listing, every page), in key order."""
        objs: list[S3Object] = []
        subs: list[str] = []
        token: str | None = None
        while True:
            q = [("list-type", "2"), ("prefix", prefix), ("delimiter", "/"), ("max-keys", "1000")]
            if token:
                q.append(("continuation-token", token))
            resp = await self.request("GET", bucket, query=q, what=f"list s3://{bucket}/{prefix}")
            root = _xml(resp.body)
            if root is None:
                raise S3Error(f"list s3://{bucket}/{prefix}: the answer is not S3 XML")
            for c in _children(root, "Contents"):
                objs.append(
                    S3Object(
                        key=_text(c, "Key"),
                        size=int(_text(c, "Size") or 0),
                        etag=_text(c, "ETag").strip('"'),
                        last_modified=_text(c, "LastModified"),
                    )
                )
            subs.extend(_text(c, "Prefix") for c in _children(root, "CommonPrefixes"))
            token = _text(root, "NextContinuationToken")
            if _text(root, "IsTruncated").lower() != "true" or not token:
                return objs, subs

    async def iter_location(self, location: S3Location) -> AsyncIterator[S3Object]:
        """The objects of an ``s3://`` source; a prefix with no object is an error (exit 2)."""
        seen = False
        async for obj in self.list_objects(location.bucket, location.prefix):
            seen = True
            yield obj
        if not seen:
            raise EmptyPrefixError(
                f"{location}: no objects under this prefix",
                hint="check the prefix (keys are case-sensitive) and the bucket",
            )

    async def get(
        self, bucket: str, key: str, *, start: int | None = None, end: int | None = None
    ) -> bytes:
        """The object's bytes, or bytes ``start..end`` (inclusive) with a ranged GET."""
        headers = {}
        if start is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end}"
        resp = await self.request("GET", bucket, key, headers=headers)
        return resp.body

    async def head(self, bucket: str, key: str) -> dict[str, str]:
        resp = await self.request("HEAD", bucket, key, ok=(200,))
        return dict(resp.headers)

    async def read_jpeg_head(self, bucket: str, key: str, n: int = HEAD_BYTES) -> bytes:
        """The first ``n`` bytes of a JPEG object (one ranged GET). An object that is not a
        JPEG is a per-file :class:`~amly.errors.MetadataError`, like a local file."""
        from ..metadata._jpeg import describe_non_jpeg

        try:
            head = await self.get(bucket, key, start=0, end=n - 1)
        except NoSuchKeyError:
            raise MetadataError(
                f"s3://{bucket}/{key}", "the object disappeared", hint="list the prefix again"
            ) from None
        except S3Error as e:
            if e.s3_code != "InvalidRange":  # a range of a 0-byte object is unsatisfiable
                raise
            head = b""
        if not head.startswith(b"\xff\xd8\xff"):
            what = "it is empty" if not head else describe_non_jpeg(head)
            raise MetadataError(
                f"s3://{bucket}/{key}",
                f"not a JPEG: {what}",
                hint="only JPEG photos can be processed; move it out of the prefix",
            )
        return head

    # -- writing -----------------------------------------------------------------------------

    async def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        content_type: str | None = None,
        md5: bytes | None = None,
    ) -> str:
        """Store ``data`` under ``key`` in one PUT; returns the checked ETag."""
        digest = md5 or hashlib.md5(data).digest()
        headers = {"Content-MD5": md5_b64(digest)}
        if content_type:
            headers["Content-Type"] = content_type
        resp = await self.request(
            "PUT", bucket, key, headers=headers, body=data, unsigned_payload=True
        )
        etag = _etag(resp.headers)
        check_etag(f"s3://{bucket}/{key}", etag, digest.hex(), resp.headers)
        self.stats["objects_put"] += 1
        return etag

    async def put_many(
        self,
        items: Iterable[tuple[str, str, Callable[[], Awaitable[bytes] | bytes]]],
        *,
        concurrency: int = 64,
        on_done: Callable[[str, str | BaseException], None] | None = None,
    ) -> dict[str, str | BaseException]:
        """PUT many small objects, ``concurrency`` in flight: ``items`` yields ``(bucket,
        key, read)`` lazily; ``read()`` gives the bytes just before they are sent, so memory
        holds ``concurrency`` objects at most. One failure never stops the others: the result
        maps each key to its ETag or its error."""
        results: dict[str, str | BaseException] = {}
        it = iter(items)
        lock = asyncio.Lock()

        async def worker() -> None:
            while True:
                async with lock:
                    nxt = next(it, None)
                if nxt is None:
                    return
                bucket, key, read = nxt
                out: str | BaseException
                try:
                    data = read()
                    if not isinstance(data, bytes):
                        data = await data
                    out = await self.put(bucket, key, data)
                except (APIError, OSError) as e:
                    if isinstance(e, AuthError | NoSuchBucketError | WrongRegionError):
                        raise
                    out = e
                results[key] = out
                if on_done is not None:
                    on_done(key, out)

        await _gather_all([worker() for _ in range(max(1, concurrency))])
        return results

    async def copy_within(self, bucket: str, key: str, src_key: str) -> None:
        await self.request(
            "PUT", bucket, key, headers={"x-amz-copy-source": quote_path(f"/{bucket}/{src_key}")}
        )

    async def delete(self, bucket: str, key: str) -> None:
        await self.request("DELETE", bucket, key)


#: Bodies larger than this are written in slices of this size: asyncio copies whatever the
#: socket does not take at once into its buffer, so one large write would hold a second
#: copy of every part in flight.
WRITE_SLICE = 256 * 1024


def _body(body: Buffer, method: str) -> Any:
    if len(body) <= WRITE_SLICE:
        return body if body or method in ("PUT", "POST") else None
    return _slices(memoryview(body))


async def _slices(view: memoryview) -> AsyncIterator[memoryview]:
    for i in range(0, len(view), WRITE_SLICE):
        yield view[i : i + WRITE_SLICE]


def check_etag(
    what: str, etag: str, expected_md5_hex: str, headers: Mapping[str, str] | None = None
) -> None:
    """An ETag must be the MD5 sent, except with SSE-KMS/SSE-C (then S3's ETag is not an MD5
    and the signed ``Content-MD5`` alone proved the body).

    >>> check_etag("x", "900150983cd24fb0d6963f7d28e17f72", "900150983cd24fb0d6963f7d28e17f72")
    >>> try:
    ...     check_etag("x", "ffff", "900150983cd24fb0d6963f7d28e17f72")
    ... except S3Error as e:
    ...     print(e.message)
    x: the server's ETag ffff is not the MD5 of the bytes sent (900150983cd24fb0d6963f7d28e17f72)
    """
    headers = headers or {}
    sse = headers.get("x-amz-server-side-encryption", "")
    if headers.get("x-amz-server-side-encryption-customer-algorithm") or sse.startswith("aws:kms"):
        return
    if etag != expected_md5_hex:
        raise S3Error(
            f"{what}: the server's ETag {etag or '(none)'} is not the MD5 of the bytes sent "
            f"({expected_md5_hex})",
            hint="the object may be corrupt in transit or at rest; rerun to send it again",
        )


async def _gather_all(coros: list[Awaitable[None]]) -> None:
    """Run ``coros`` together; the first exception cancels the rest and is raised."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


__all__ = [
    "EmptyPrefixError",
    "NoSuchBucketError",
    "NoSuchKeyError",
    "NoSuchUploadError",
    "S3AuthError",
    "S3Client",
    "S3Config",
    "S3Error",
    "S3Location",
    "S3Object",
    "WrongRegionError",
    "classify_s3",
]
