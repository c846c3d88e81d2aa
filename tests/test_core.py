"""The shared core: the retry policy, the rate limiter, the transport, secrets, atomic writes
and the description format."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from datetime import datetime, timezone

import pytest
from aiohttp import web

from amly import description
from amly._atomic import atomic_write
from amly.config import Endpoints, Secret
from amly.errors import APIError, AuthError, UsageError
from amly.net import Transport
from amly.net.limits import RateLimiter
from amly.net.retry import Retry, RetryPolicy, with_retries
from amly.types import ImageMeta

FAST = RetryPolicy(max_attempts=5, base_delay=0.001, max_delay=0.01, rate_limit_wait=0.01)


def test_with_retries_retries_transient_then_succeeds() -> None:
    calls: list[int] = []

    async def attempt(n: int) -> str:
        calls.append(n)
        if n < 2:
            raise ConnectionResetError("reset")
        return "ok"

    assert asyncio.run(with_retries(attempt, FAST)) == "ok"
    assert calls == [0, 1, 2]


def test_with_retries_gives_up_with_api_error() -> None:
    async def attempt(n: int) -> None:
        raise Retry("server error 503")

    with pytest.raises(APIError, match="after 5 attempts"):
        asyncio.run(with_retries(attempt, FAST))


def test_with_retries_does_not_retry_auth() -> None:
    calls: list[int] = []

    async def attempt(n: int) -> None:
        calls.append(n)
        raise AuthError("expired")

    with pytest.raises(AuthError):
        asyncio.run(with_retries(attempt, FAST))
    assert calls == [0]


def test_rate_limiter_paces_and_pauses() -> None:
    async def main() -> tuple[float, float]:
        lim = RateLimiter(100, per=1.0, burst=1)  # 100/s: 11 acquisitions take >= 0.1 s
        t0 = time.monotonic()
        for _ in range(11):
            await lim.acquire()
        paced = time.monotonic() - t0
        lim.pause(0.2)
        t1 = time.monotonic()
        await lim.acquire()
        return paced, time.monotonic() - t1

    paced, paused = asyncio.run(main())
    assert paced >= 0.09
    assert paused >= 0.19


async def _serve(handler: web.StreamResponse | object) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)  # type: ignore[arg-type]
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def test_transport_honours_429_backoff_and_sends_oauth_header() -> None:
    seen: list[tuple[float, str | None]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((time.monotonic(), request.headers.get("Authorization")))
        if len(seen) == 1:
            return web.json_response(
                {"backoff": 150, "debug_info": {"type": "RequestRateLimitedError"}}, status=429
            )
        return web.json_response({"id": "1", "username": "u"})

    async def main() -> object:
        runner, url = await _serve(handler)
        try:
            async with Transport(Endpoints.local(url), Secret("tok-123456789"), policy=FAST) as t:
                res = await t.graph_get("me", {"fields": "id,username"})
                assert t.stats["retries"] == 1
                return res
        finally:
            await runner.cleanup()

    assert asyncio.run(main()) == {"id": "1", "username": "u"}
    assert seen[1][0] - seen[0][0] >= 0.14  # the server's backoff, not the policy's 10 ms
    assert all(auth == "OAuth tok-123456789" for _, auth in seen)


def test_transport_maps_401_to_auth_error_without_leaking_token() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "bad token", "code": 190}}, status=401)

    async def main() -> None:
        runner, url = await _serve(handler)
        try:
            async with Transport(
                Endpoints.local(url), Secret("SECRET-abcdef123"), policy=FAST
            ) as t:
                await t.graph_get("me")
        finally:
            await runner.cleanup()

    with pytest.raises(AuthError) as info:
        asyncio.run(main())
    assert "SECRET" not in str(info.value) and "abcdef123" not in repr(info.value.args)


def test_transport_refuses_token_in_url() -> None:
    async def main() -> None:
        async with Transport(Endpoints(), Secret("x" * 20)) as t:
            await t.graph_get("images", {"access_token": "x"})

    with pytest.raises(UsageError, match="token in a URL"):
        asyncio.run(main())


def test_secret_never_prints() -> None:
    s = Secret("MLY|1234|supersecretvalue")
    assert "supersecret" not in f"{s} {s!r} {[s]}"


def test_atomic_write_keeps_mode_and_leaves_no_temp(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "a.jpg"
    p.write_bytes(b"old")
    os.chmod(p, 0o640)
    atomic_write(p, [b"ne", b"w"])
    assert p.read_bytes() == b"new"
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o640
    assert os.listdir(tmp_path) == ["a.jpg"]


def test_atomic_write_failure_keeps_old(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "a.jpg"
    p.write_bytes(b"old")

    def chunks():  # type: ignore[no-untyped-def]
        yield b"partial"
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(p, chunks())
    assert p.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.jpg"]


def test_description_entry_matches_official_schema(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from mapillary_tools.serializer.description import validate_image_desc

    img = ImageMeta(
        str(tmp_path / "a.jpg"),
        datetime(2021, 2, 13, 13, 24, 41, 140000, tzinfo=timezone.utc),
        52.5,
        13.4,
        alt=34.5,
        heading=12.0,
        make="M",
        model="X",
        filesize=10,
    )
    entry = description.file_entry(img, "0", md5sum="0" * 32)
    validate_image_desc(entry)  # raises on an invalid entry
    embedded = description.embeddable(entry)
    assert description.validate_embedded(embedded) == []
    assert json.loads(description.dumps(embedded)) == embedded


def test_transport_fails_fast_when_the_host_never_answers() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main() -> None:
        policy = RetryPolicy(max_attempts=50, base_delay=0.001, max_delay=0.01)
        async with Transport(
            Endpoints.local(f"http://127.0.0.1:{port}"), Secret("t" * 20), policy=policy
        ) as t:
            try:
                await t.graph_get("me")
            finally:
                assert t.stats["requests"] == policy.first_contact_attempts

    with pytest.raises(APIError, match="cannot connect to 127.0.0.1"):
        asyncio.run(main())
