"""The S3 client against a real S3-protocol server (moto's, on 127.0.0.1, its own process),
read back and cross-checked with boto3."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from s3_support import ACCESS_KEY, SECRET_KEY, boto3_client, moto_server, s3_env

from amly.errors import AuthError, MetadataError, UsageError
from amly.journal import Journal
from amly.storage.s3 import (
    EmptyPrefixError,
    NoSuchBucketError,
    S3AuthError,
    S3Client,
    S3Config,
    S3Location,
)
from amly.storage.s3_multipart import (
    PART_TABLE,
    UPLOAD_TABLE,
    SourceChanged,
    composite_etag,
    list_multipart_uploads,
    list_parts,
    upload_file,
)

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def bucket(endpoint: str, request: pytest.FixtureRequest) -> str:
    name = "t-" + hashlib.md5(request.node.name.encode()).hexdigest()[:12]
    boto3_client(endpoint).create_bucket(Bucket=name)
    return name


def config(endpoint: str) -> S3Config:
    return S3Config.from_env(env=s3_env(endpoint))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


KEYS = [
    "plain.jpg",
    "with space/IMG 0001.jpg",
    "Straße/ünïcödé 照片.jpg",
    "a+b=c&d.jpg",
    "~x/y_z-1.JPG",
]


def test_put_get_list_roundtrip_read_back_by_boto3(endpoint: str, bucket: str) -> None:
    blobs = {k: os.urandom(1000 + i) for i, k in enumerate(KEYS)}

    async def go() -> tuple[dict[str, str], bytes, list[str]]:
        async with S3Client(config(endpoint)) as s3:
            etags = {k: await s3.put(bucket, k, v) for k, v in blobs.items()}
            part = await s3.get(bucket, KEYS[2], start=10, end=19)
            listed = [o.key async for o in s3.list_objects(bucket, "")]
        return etags, part, listed

    etags, part, listed = run(go())
    boto = boto3_client(endpoint)
    for k, v in blobs.items():
        got = boto.get_object(Bucket=bucket, Key=k)["Body"].read()
        assert got == v
        assert etags[k] == hashlib.md5(v).hexdigest()
    assert part == blobs[KEYS[2]][10:20]
    assert listed == sorted(KEYS, key=lambda k: k.encode())


def test_listing_is_paged_and_lazy(endpoint: str, bucket: str) -> None:
    """2,100 objects come back over three pages; the consumer sees the first object before
    the second page is asked for."""
    n = 2100

    async def go() -> tuple[list[str], int, dict[str, Any]]:
        async with S3Client(config(endpoint)) as s3:
            items = ((bucket, f"p/{i:05d}.bin", lambda i=i: str(i).encode()) for i in range(n))
            res = await s3.put_many(items, concurrency=32)
            assert all(isinstance(v, str) for v in res.values())
            before = s3.stats["requests"]
            it = s3.list_objects(bucket, "p/")
            first = await it.__anext__()
            after_first = s3.stats["requests"] - before
            rest = [o.key async for o in it]
            return [first.key, *rest], after_first, dict(s3.stats)

    keys, requests_for_first, _ = run(go())
    assert keys == [f"p/{i:05d}.bin" for i in range(n)]
    assert requests_for_first == 1  # one page fetched, not the whole prefix


def test_clear_errors_missing_bucket_empty_prefix_not_a_jpeg(endpoint: str, bucket: str) -> None:
    boto = boto3_client(endpoint)
    boto.put_object(Bucket=bucket, Key="photos/not.jpg", Body=b"\x89PNG\r\n\x1a\nrest")
    boto.put_object(Bucket=bucket, Key="photos/empty.jpg", Body=b"")

    async def go() -> list[BaseException]:
        errors: list[BaseException] = []
        async with S3Client(config(endpoint)) as s3:
            for coro in (
                s3.get("no-such-bucket-here", "k"),
                _drain(s3.iter_location(S3Location.parse(f"s3://{bucket}/nothing/here/"))),
                s3.read_jpeg_head(bucket, "photos/not.jpg"),
                s3.read_jpeg_head(bucket, "photos/empty.jpg"),
            ):
                try:
                    await coro
                except Exception as e:  # noqa: BLE001 - the test inspects each
                    errors.append(e)
        return errors

    missing, empty, png, zero = run(go())
    assert isinstance(missing, NoSuchBucketError) and missing.exit_code == 2
    assert "does not exist" in str(missing) and "--s3-endpoint" in str(missing)
    assert isinstance(empty, EmptyPrefixError) and empty.exit_code == 2
    assert "no objects under this prefix" in str(empty)
    assert isinstance(png, MetadataError) and "looks like a PNG" in str(png)
    assert str(png).startswith(f"s3://{bucket}/photos/not.jpg: not a JPEG")
    assert isinstance(zero, MetadataError) and "empty" in str(zero)
    for e in (missing, empty, png, zero):
        assert SECRET_KEY not in str(e) and ACCESS_KEY not in str(e)


async def _drain(it: Any) -> None:
    async for _ in it:
        pass


@pytest.mark.parametrize("checksum", ["md5", "crc32"])
def test_multipart_parts_in_order_etag_and_bytes(
    endpoint: str, bucket: str, tmp_path: Path, checksum: str
) -> None:
    data = os.urandom(23 * MiB + 12345)
    f = tmp_path / "video file.mp4"
    f.write_bytes(data)
    order: list[int] = []

    async def go() -> Any:
        async with S3Client(config(endpoint)) as s3:
            with Journal(tmp_path / "j.sqlite3") as j:
                r = await upload_file(
                    s3, bucket, "v/video file.mp4", f, journal=j, part_size=5 * MiB,
                    parts_in_flight=3, on_part=lambda n, size: order.append(n), checksum=checksum,
                )  # fmt: skip
                left = (len(j.table(UPLOAD_TABLE)), len(j.table(PART_TABLE)))
            return r, left

    r, left = run(go())
    assert r.parts == 5 and r.parts_sent == 5 and sorted(order) == [1, 2, 3, 4, 5]
    assert left == (0, 0)  # a finished upload leaves nothing in the journal
    boto = boto3_client(endpoint)
    got = boto.get_object(Bucket=bucket, Key="v/video file.mp4")["Body"].read()
    assert got == data  # parts assembled in order (moto would take any order we gave)
    expected = composite_etag(
        [hashlib.md5(data[i : i + 5 * MiB]).digest() for i in range(0, len(data), 5 * MiB)]
    )
    assert r.etag == expected
    assert boto.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_given_up_upload_is_aborted(endpoint: str, bucket: str, tmp_path: Path) -> None:
    """The file shrinks mid-upload: the upload is given up, aborted on the server (no orphan
    parts), forgotten by the journal; the error names the file and what to do."""
    f = tmp_path / "growing.mp4"
    f.write_bytes(os.urandom(30 * MiB))

    def truncate(n: int, size: int) -> None:
        if n == 1:
            with open(f, "r+b") as fh:
                fh.truncate(12 * MiB)

    async def go() -> Any:
        async with S3Client(config(endpoint)) as s3:
            with Journal(tmp_path / "j.sqlite3") as j:
                with pytest.raises(SourceChanged) as ei:
                    await upload_file(
                        s3, bucket, "growing.mp4", f, journal=j, part_size=5 * MiB,
                        parts_in_flight=1, on_part=truncate,
                    )  # fmt: skip
                left = (len(j.table(UPLOAD_TABLE)), len(j.table(PART_TABLE)))
            return ei.value, left, await list_multipart_uploads(s3, bucket)

    err, left, ours = run(go())
    assert str(f) in str(err) and "upload it again" in str(err)
    assert left == (0, 0) and ours == []
    boto = boto3_client(endpoint)
    assert boto.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert "Contents" not in boto.list_objects_v2(Bucket=bucket)


def test_list_parts_and_uploads_follow_every_page(endpoint: str, bucket: str) -> None:
    """ListParts and ListMultipartUploads page by page (2 per page here) see what boto3 made."""
    boto = boto3_client(endpoint)
    ids = {}
    for k in ("a b/1", "a b/2", "a b/3"):
        ids[k] = boto.create_multipart_upload(Bucket=bucket, Key=k)["UploadId"]
    etags = {}
    for n in range(1, 6):
        r = boto.upload_part(Bucket=bucket, Key="a b/2", UploadId=ids["a b/2"], PartNumber=n,
                             Body=bytes([n]) * 1000)  # fmt: skip
        etags[n] = r["ETag"].strip('"')

    async def go() -> Any:
        async with S3Client(config(endpoint)) as s3:
            parts = await list_parts(s3, bucket, "a b/2", ids["a b/2"], page_size=2)
            ups = await list_multipart_uploads(s3, bucket, "a b/", page_size=2)
            before = s3.stats["requests"]
            await list_parts(s3, bucket, "a b/2", ids["a b/2"], page_size=2)
            return parts, ups, s3.stats["requests"] - before

    parts, ups, requests = run(go())
    assert {n: p[0] for n, p in parts.items()} == etags
    assert all(p[1] == 1000 for p in parts.values())
    assert sorted(ups) == sorted(ids.items())
    assert requests == 3  # 5 parts, 2 per page


@pytest.mark.slow
def test_kill_9_halfway_then_rerun_sends_only_missing_parts(
    endpoint: str, bucket: str, tmp_path: Path
) -> None:
    """A 200 MB file in 25 concurrent parts; the uploader is kill -9'd after 10 parts; the
    rerun lists the server's parts and sends only the others; the object is byte-exact."""
    f = tmp_path / "big.bin"
    h = hashlib.md5()
    with open(f, "wb") as fh:
        for i in range(200):
            block = hashlib.sha256(str(i).encode()).digest() * (MiB // 32)
            h.update(block)
            fh.write(block)
    journal = tmp_path / "journal.sqlite3"
    env = s3_env(endpoint, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, str(ROOT / "tests" / "s3_put_file.py"), str(f), bucket, "big.bin",
           str(journal), "--parts-in-flight", "3"]  # fmt: skip
    proc = subprocess.Popen([*cmd, "--delay", "0.3"], stdout=subprocess.PIPE, env=env, text=True)
    assert proc.stdout is not None
    seen = 0
    for line in proc.stdout:
        if line.startswith("part "):
            seen += 1
            if seen == 10:
                os.kill(proc.pid, signal.SIGKILL)
                break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    boto = boto3_client(endpoint)
    uploads = boto.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert len(uploads) == 1
    upload_id = uploads[0]["UploadId"]
    # A part whose whole body reached the server before the kill may still be being stored:
    # wait until the server's list is stable, so the rerun sees what this test sees.
    had = boto.list_parts(Bucket=bucket, Key="big.bin", UploadId=upload_id)["Parts"]
    for _ in range(20):
        time.sleep(0.5)
        now = boto.list_parts(Bucket=bucket, Key="big.bin", UploadId=upload_id)["Parts"]
        if now == had:
            break
        had = now
    assert 10 <= len(had) < 25

    out = subprocess.run(cmd, capture_output=True, env=env, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    result = json.loads(lines[-1])
    sent = sorted(int(x.split()[1]) for x in lines if x.startswith("part "))
    assert result["resumed"] is True and result["parts"] == 25
    # moto keeps a part whose body the kill cut short (S3 would refuse it): such a part has
    # the wrong size, so it is not reused but sent again. Every complete part is reused.
    complete = {p["PartNumber"] for p in had if p["Size"] == 8 * MiB}
    assert len(complete) >= 10
    assert result["parts_reused"] == len(complete)
    assert sent == sorted(set(range(1, 26)) - complete)
    assert result["parts_sent"] == 25 - len(complete)
    body = boto.get_object(Bucket=bucket, Key="big.bin")["Body"]
    got = hashlib.md5()
    for chunk in iter(lambda: body.read(MiB), b""):
        got.update(chunk)
    assert got.hexdigest() == h.hexdigest()
    assert boto.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# -- configuration ------------------------------------------------------------------------


def test_config_the_aws_way(tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    conf = tmp_path / "config"
    creds.write_text(
        "[default]\naws_access_key_id = AKDEFAULT\naws_secret_access_key = sdefault\n"
        "[work]\naws_access_key_id = AKWORK\naws_secret_access_key = swork0123456789abc\n"
        "aws_session_token = tok0123456789abcdef\n"
    )
    conf.write_text(
        "[default]\nregion = eu-west-1\n"
        "[profile work]\nregion = eu-central-1\nendpoint_url = http://127.0.0.1:9000\n"
        "[profile cfgonly]\naws_access_key_id = AKCFG\naws_secret_access_key = scfg\n"
    )
    files = {"AWS_SHARED_CREDENTIALS_FILE": str(creds), "AWS_CONFIG_FILE": str(conf)}
    d = S3Config.from_env(env=files)
    assert (d.credentials.access_key, d.region, d.endpoint) == ("AKDEFAULT", "eu-west-1", None)
    w = S3Config.from_env(env={**files, "AWS_PROFILE": "work"})
    assert (w.credentials.access_key, w.region, w.endpoint) == (
        "AKWORK",
        "eu-central-1",
        "http://127.0.0.1:9000",
    )
    assert w.path_style and w.credentials.session_token is not None
    assert "swork0123456789abc" not in repr(w) and "tok0123456789abcdef" not in repr(w)
    assert (
        S3Config.from_env(env={**files, "AWS_PROFILE": "cfgonly"}).credentials.access_key == "AKCFG"
    )
    # the environment's keys win over the default profile, not over an explicit one
    env = {**files, "AWS_ACCESS_KEY_ID": "AKENV", "AWS_SECRET_ACCESS_KEY": "senv",
           "AWS_REGION": "ap-south-1", "AWS_ENDPOINT_URL": "http://minio:9000"}  # fmt: skip
    e = S3Config.from_env(env=env)
    assert (e.credentials.access_key, e.region, e.endpoint) == (
        "AKENV",
        "ap-south-1",
        "http://minio:9000",
    )
    assert S3Config.from_env(env=env, profile="work").credentials.access_key == "AKWORK"
    assert S3Config.from_env(env=env, endpoint="http://x:1/").endpoint == "http://x:1"
    assert e.checksum == "md5"
    assert S3Config.from_env(env={**env, "AMLY_S3_CHECKSUM": "CRC32"}).checksum == "crc32"
    with pytest.raises(UsageError, match="AMLY_S3_CHECKSUM"):
        S3Config.from_env(env={**env, "AMLY_S3_CHECKSUM": "sha1"})
    with pytest.raises(AuthError, match="no S3 credentials"):
        S3Config.from_env(env={"AWS_SHARED_CREDENTIALS_FILE": os.devnull, "HOME": str(tmp_path)})
    with pytest.raises(AuthError, match="without its secret"):
        S3Config.from_env(env={"AWS_ACCESS_KEY_ID": "AK", "HOME": str(tmp_path)})


# -- credentials checked by the server ---------------------------------------------------


@pytest.fixture(scope="module")
def auth_endpoint() -> Iterator[tuple[str, dict[str, str]]]:
    """A moto server that checks credentials, signatures and IAM policies (after the few
    unauthenticated setup calls): a user allowed on one bucket, and a role's session."""
    with moto_server(env={"INITIAL_NO_AUTH_ACTION_COUNT": "8"}) as url:
        import boto3

        kw: dict[str, Any] = dict(endpoint_url=url, region_name="us-east-1",
                                  aws_access_key_id="x", aws_secret_access_key="x")  # fmt: skip
        iam = boto3.client("iam", **kw)
        s3 = boto3.client("s3", **kw)
        s3.create_bucket(Bucket="allowed")  # 1
        s3.create_bucket(Bucket="forbidden")  # 2
        iam.create_user(UserName="amly")  # 3
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "s3:*",
                 "Resource": ["arn:aws:s3:::allowed", "arn:aws:s3:::allowed/*"]},
                {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"},
            ],
        }  # fmt: skip
        iam.put_user_policy(UserName="amly", PolicyName="p", PolicyDocument=json.dumps(policy))  # 4
        key = iam.create_access_key(UserName="amly")["AccessKey"]  # 5
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}  # fmt: skip
        role = iam.create_role(RoleName="r", AssumeRolePolicyDocument=json.dumps(trust))  # 6
        iam.put_role_policy(RoleName="r", PolicyName="p", PolicyDocument=json.dumps(policy))  # 7
        sts = boto3.client("sts", **{**kw, "aws_access_key_id": key["AccessKeyId"],
                                     "aws_secret_access_key": key["SecretAccessKey"]})  # fmt: skip
        c = sts.assume_role(RoleArn=role["Role"]["Arn"], RoleSessionName="amly-test")["Credentials"]
        yield (
            url,
            {
                "key": key["AccessKeyId"],
                "secret": key["SecretAccessKey"],
                "role_key": c["AccessKeyId"],
                "role_secret": c["SecretAccessKey"],
                "role_token": c["SessionToken"],
            },
        )


def _try(url: str, env: dict[str, str], bucket: str) -> BaseException | bytes:
    async def go() -> bytes:
        async with S3Client(S3Config.from_env(env=s3_env(url, **env))) as s3:
            await s3.put(bucket, "dir with space/é.jpg", b"\xff\xd8\xff" + b"x" * 100)
            return await s3.get(bucket, "dir with space/é.jpg", start=0, end=2)

    try:
        return run(go())
    except Exception as e:  # noqa: BLE001 - the test inspects it
        return e


def test_server_checked_signatures_and_auth_errors(
    auth_endpoint: tuple[str, dict[str, str]],
) -> None:
    url, k = auth_endpoint
    keys = {"AWS_ACCESS_KEY_ID": k["key"], "AWS_SECRET_ACCESS_KEY": k["secret"]}
    # moto recomputes every signature with botocore: these go through only if ours are right
    assert _try(url, keys, "allowed") == b"\xff\xd8\xff"
    session = {"AWS_ACCESS_KEY_ID": k["role_key"], "AWS_SECRET_ACCESS_KEY": k["role_secret"],
               "AWS_SESSION_TOKEN": k["role_token"]}  # fmt: skip
    assert _try(url, session, "allowed") == b"\xff\xd8\xff"

    denied = _try(url, keys, "forbidden")
    assert isinstance(denied, S3AuthError) and denied.s3_code == "AccessDenied"
    assert denied.exit_code == 3 and "s3:PutObject" in str(denied)
    wrong_secret = _try(
        url, {**keys, "AWS_SECRET_ACCESS_KEY": "not-the-secret-0123456789"}, "allowed"
    )
    assert isinstance(wrong_secret, S3AuthError)
    assert wrong_secret.s3_code == "SignatureDoesNotMatch" and "AWS_SECRET_ACCESS_KEY" in str(
        wrong_secret
    )
    unknown = _try(url, {**keys, "AWS_ACCESS_KEY_ID": "AKIANOBODY0000000000"}, "allowed")
    assert isinstance(unknown, S3AuthError) and unknown.s3_code == "InvalidAccessKeyId"
    bad_token = _try(
        url, {**session, "AWS_SESSION_TOKEN": "expired-or-foreign-token-0000"}, "allowed"
    )
    assert isinstance(bad_token, S3AuthError) and bad_token.s3_code == "InvalidToken"
    assert "AWS_SESSION_TOKEN" in str(bad_token)
    for e in (denied, wrong_secret, unknown, bad_token):
        text = f"{e} {e!r}"
        for secret in (k["secret"], k["role_secret"], k["role_token"]):
            assert secret not in text
