"""amly's own SigV4 signs exactly as botocore's S3SigV4Auth does, for the requests amly makes:
keys with spaces and non-ASCII, query strings with upload ids, a session token, signed and
unsigned payloads. botocore signs through its full ``add_auth`` path at a frozen clock."""

from __future__ import annotations

import datetime
import hashlib
from unittest import mock

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from amly.config import Secret
from amly.storage.s3 import S3Client, md5_b64
from amly.storage.s3_config import S3Config
from amly.storage.sigv4 import EMPTY_SHA256, UNSIGNED_PAYLOAD, Credentials

NOW = datetime.datetime(2026, 11, 29, 15, 4, 5, tzinfo=datetime.timezone.utc)
AK = "AKIAIOSFODNN7EXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEJr//////////wEaDOv+session/token==" * 3

UPLOAD_ID = "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA--/+=="
CASES = [
    # (method, endpoint, key, query, extra headers, body, unsigned)
    ("GET", "http://127.0.0.1:9000", "photos/day 1/IMG 0001.jpg", [], {"Range": "bytes=0-65535"}, b"", False),
    ("GET", "https://s3.eu-west-1.amazonaws.com", "Straße/ünïcödé 照片 +&=.jpg", [], {}, b"", False),
    ("HEAD", "http://127.0.0.1:9000", "a/b~c/d_e-f.g", [], {}, b"", False),
    ("GET", "http://127.0.0.1:9000", "", [("list-type", "2"), ("prefix", "my photos/é"), ("max-keys", "1000"), ("continuation-token", "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")], {}, b"", False),
    ("POST", "http://127.0.0.1:9000", "videos/big file.mp4", [("uploads", "")], {"Content-Type": "video/mp4"}, b"", False),
    ("PUT", "https://s3.amazonaws.com", "videos/big file.mp4", [("partNumber", "7"), ("uploadId", UPLOAD_ID)], {}, b"x" * 1000, True),
    ("POST", "http://127.0.0.1:9000", "videos/big file.mp4", [("uploadId", UPLOAD_ID)], {"Content-Type": "application/xml"}, b"<CompleteMultipartUpload/>", False),
    ("DELETE", "http://127.0.0.1:9000", "videos/big file.mp4", [("uploadId", UPLOAD_ID)], {}, b"", False),
    ("GET", "http://127.0.0.1:9000", "k", [("uploadId", UPLOAD_ID), ("max-parts", "1000"), ("part-number-marker", "0")], {}, b"", False),
]  # fmt: skip


@pytest.mark.parametrize("token", [None, TOKEN], ids=["keys", "session-token"])
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_signature_equals_botocore(case: tuple, token: str | None) -> None:  # type: ignore[type-arg]
    method, endpoint, key, query, extra, body, unsigned = case
    config = S3Config(
        Credentials(AK, Secret(SK), Secret(token) if token else None),
        region="eu-west-1",
        endpoint=endpoint if "amazonaws" not in endpoint else None,
    )
    client = S3Client(config)
    url = client.url("bucket", key)
    if query:
        from amly.storage.sigv4 import canonical_query

        url = f"{url}?{canonical_query(query)}"
    headers = dict(extra)
    if unsigned:
        headers["Content-MD5"] = md5_b64(hashlib.md5(body).digest())
    if body or method in ("PUT", "POST"):
        headers["Content-Length"] = str(len(body))
    payload = (
        UNSIGNED_PAYLOAD
        if unsigned
        else (hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256)
    )
    ours = client.signed_headers(method, url, headers, payload, now=NOW)

    req = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    if unsigned:
        # botocore leaves the payload unsigned for streamed bodies with a checksum over TLS
        req.context["has_streaming_input"] = True
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        S3SigV4Auth(BotoCredentials(AK, SK, token), "s3", "eu-west-1").add_auth(req)
    assert req.headers["X-Amz-Content-SHA256"] == payload
    assert ours["Authorization"] == req.headers["Authorization"]
    assert ours["x-amz-date"] == req.headers["X-Amz-Date"]
    if token:
        assert ours["x-amz-security-token"] == req.headers["X-Amz-Security-Token"]
    # The secret is in neither the headers nor any repr.
    assert (
        SK not in repr(ours) and SK not in repr(config) and (not token or token not in repr(config))
    )
