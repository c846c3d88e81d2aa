"""AWS Signature Version 4 for S3, as small pure functions (no I/O, no clock).

The canonical request follows the S3 flavour of SigV4: the path is percent-encoded once,
byte by byte (``/`` kept, no dot-segment normalisation), the query is sorted by encoded name
then value, and every header sent is signed except the hop-by-hop ones botocore leaves out.
``tests/test_s3_sigv4.py`` proves the results equal botocore's ``S3SigV4Auth`` for the same
request.

>>> creds = Credentials("AKIDEXAMPLE", Secret("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"))
>>> h = sign("GET", "https://examplebucket.s3.amazonaws.com/test.txt", {"Range": "bytes=0-9"},
...          creds, "us-east-1", "20130524T000000Z", EMPTY_SHA256)
>>> h["Authorization"].split("Signature=")[1]
'f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41'
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import quote, urlsplit

from ..config import Secret

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
#: Headers never signed (botocore's SIGNED_HEADERS_BLACKLIST): proxies may change them.
UNSIGNED_HEADERS = frozenset(
    {
        "baggage",
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "traceparent",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-trace-id",
    }
)


@dataclasses.dataclass(frozen=True)
class Credentials:
    """An access key pair, and the session token of temporary credentials. ``repr`` masks
    the secret parts (they are :class:`~amly.config.Secret`)."""

    access_key: str
    secret_key: Secret
    session_token: Secret | None = None


def quote_path(path: str) -> str:
    """The S3 canonical (and wire) form of a path: every byte but ``A-Za-z0-9-_.~/`` escaped.

    >>> quote_path("/bucket/my photos/Straße+1.jpg")
    '/bucket/my%20photos/Stra%C3%9Fe%2B1.jpg'
    """
    return quote(path, safe="/~")


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    """Query parameters, encoded and sorted (name, then value); a bare name gets ``=``.

    >>> canonical_query([("uploadId", "a b/c"), ("partNumber", "2")])
    'partNumber=2&uploadId=a%20b%2Fc'
    >>> canonical_query([("uploads", "")])
    'uploads='
    """
    pairs = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in params)
    return "&".join(f"{k}={v}" for k, v in pairs)


def signing_key(secret: Secret, date: str, region: str, service: str = "s3") -> bytes:
    """The derived key of one day, region and service (cache it: it changes daily)."""
    k = hmac.new(f"AWS4{secret.reveal()}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def canonical_request(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    payload_hash: str,
) -> tuple[str, str]:
    """``(canonical request, signed header names)`` for already-encoded ``path``/``query``."""
    canon: dict[str, str] = {}
    for name, value in headers.items():
        lname = name.lower()
        if lname in UNSIGNED_HEADERS:
            continue
        value = " ".join(str(value).split())
        canon[lname] = f"{canon[lname]},{value}" if lname in canon else value
    names = sorted(canon)
    signed = ";".join(names)
    lines = "".join(f"{n}:{canon[n]}\n" for n in names)
    return f"{method}\n{path}\n{query}\n{lines}\n{signed}\n{payload_hash}", signed


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    credentials: Credentials,
    region: str,
    amz_date: str,
    payload_hash: str,
    *,
    key: bytes | None = None,
    service: str = "s3",
) -> dict[str, str]:
    """The headers to send: ``headers`` plus ``host``, ``x-amz-date``,
    ``x-amz-content-sha256``, the session token when there is one, and ``Authorization``.

    ``url`` must already be in wire form (:func:`quote_path` path, :func:`canonical_query`
    query); ``amz_date`` is ``YYYYMMDDTHHMMSSZ``; ``key`` is a cached :func:`signing_key`.
    """
    parts = urlsplit(url)
    out = dict(headers)
    lower = {k.lower() for k in out}
    if "host" not in lower:
        out["host"] = parts.netloc
    out["x-amz-date"] = amz_date
    out["x-amz-content-sha256"] = payload_hash
    if credentials.session_token is not None:
        out["x-amz-security-token"] = credentials.session_token.reveal()
    query = canonical_query(_split_query(parts.query)) if parts.query else ""
    creq, signed = canonical_request(method, parts.path or "/", query, out, payload_hash)
    date = amz_date[:8]
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = (
        f"{ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(creq.encode('utf-8')).hexdigest()}"
    )
    k = key if key is not None else signing_key(credentials.secret_key, date, region, service)
    signature = hmac.new(k, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    out["Authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    return out


def _split_query(query: str) -> list[tuple[str, str]]:
    """Decode a wire query back into pairs (canonical_query re-encodes them uniformly)."""
    from urllib.parse import unquote

    pairs = []
    for item in query.split("&"):
        if not item:
            continue
        k, _, v = item.partition("=")
        pairs.append((unquote(k), unquote(v)))
    return pairs
