"""``async with PanoramaxClient(api_url) as client: await client.upload(...)``.

The Panoramax counterpart of :class:`amly.Client`: the same transport (sessions, the one retry
policy, rate limiters), the same journal and the same upload inputs (folders processed in
memory, description files, :class:`~amly.Sequence` objects, an async stream of sequences).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterable, Callable, Iterable
from typing import Any

from ...api import upload as _upload
from ...api._http import Transport
from ...api._retry import RetryPolicy
from ...config import Endpoints, Secret
from ...errors import DuplicateError, FileError
from ...journal import Journal
from .api import PanoramaxAPI
from .upload import DEFAULT_CONCURRENCY, PanoramaxUploader, WaitProgress

TOKEN_ENV = "PANORAMAX_TOKEN"


def profile_name(profile: str | None) -> str:
    """Panoramax tokens live next to Mapillary's in the profiles file, under their own names.

    >>> profile_name(None), profile_name("work")
    ('panoramax:default', 'panoramax:work')
    """
    return f"panoramax:{profile or 'default'}"


def same_instance(a: str | None, b: str) -> bool:
    """
    >>> same_instance("https://x.org/api/", "https://x.org")
    True
    """

    def norm(u: str) -> str:
        u = u.rstrip("/")
        return u[: -len("/api")] if u.endswith("/api") else u

    return a is not None and norm(a) == norm(b)


def resolve_token(api_url: str, profile: str | None = None) -> Secret | None:
    """``PANORAMAX_TOKEN``, else the profile saved by ``amly auth --service panoramax`` for this
    instance, else None (an instance with auth off takes anonymous uploads)."""
    from ...api.auth import load_profiles

    if env := os.environ.get(TOKEN_ENV, "").strip():
        return Secret(env)
    entry = load_profiles().get(profile_name(profile))
    if entry and entry.get("token") and same_instance(entry.get("endpoint"), api_url):
        return Secret(str(entry["token"]))
    return None


class PanoramaxClient:
    """A client of one Panoramax instance (``api_url``: its base URL). ``token``: str or
    :class:`~amly.Secret`; by default ``PANORAMAX_TOKEN``, then the saved profile, else none.
    ``journal`` as for :class:`amly.Client`."""

    def __init__(
        self,
        api_url: str,
        token: str | Secret | None = None,
        *,
        profile: str | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        readahead: int = _upload.DEFAULT_READAHEAD,
        buffer_bytes: int = _upload.DEFAULT_BUFFER_BYTES,
        journal: str | os.PathLike[str] | Journal | bool | None = None,
        policy: RetryPolicy | None = None,
        timeout: float = 60.0,
    ) -> None:
        if not api_url.startswith(("http://", "https://")):
            from ...errors import UsageError

            raise UsageError(f"--api-url must be an http(s) URL, not {api_url!r}")
        self.api_url = api_url.rstrip("/")
        if token is None:
            self.token = resolve_token(api_url, profile)
        else:
            self.token = token if isinstance(token, Secret) else Secret(token)
        self.concurrency = concurrency
        self.readahead = readahead
        self.buffer_bytes = buffer_bytes
        self._journal_arg = journal
        self._journal: Journal | None = None
        self.transport = Transport(
            Endpoints.local(self.api_url),
            None,
            concurrency=max(concurrency, 8),
            policy=policy,
            timeout=timeout,
        )
        self.api = PanoramaxAPI(self.transport, self.api_url, self.token)
        self.configuration: dict[str, Any] | None = None
        self.account: dict[str, Any] | None = None

    async def __aenter__(self) -> PanoramaxClient:
        await self.transport.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.transport.__aexit__(*exc)
        if self._journal is not None and not isinstance(self._journal_arg, Journal):
            self._journal.close()
        self._journal = None

    @property
    def journal(self) -> Journal | None:
        if self._journal is None and self._journal_arg is not False:
            arg = self._journal_arg
            if isinstance(arg, Journal):
                self._journal = arg
            else:
                self._journal = Journal(None if arg in (None, True) else arg)  # type: ignore[arg-type]
        return self._journal

    async def check(self) -> str:
        """Check the instance (``/api/configuration``) and the token (``/api/users/me``); return
        the journal scope: this instance and this account."""
        self.configuration = await self.api.configuration()
        self.account = await self.api.me()
        who = self.account["id"] if self.account else "anonymous"
        return hashlib.md5(f"panoramax|{self.api.base}|{who}".encode()).hexdigest()[:16]

    async def upload(
        self,
        items: Iterable[Any] | AsyncIterable[Any],
        *,
        subfolders: bool = False,
        reupload: bool = False,
        dry_run: bool = False,
        progress: _upload.ProgressCallback | None = None,
        process_options: Any = None,
        wait: bool = False,
        wait_progress: Callable[[WaitProgress], None] | None = None,
    ) -> _upload.UploadResult:
        """Upload folders, description files or sequences: one upload set per sequence. With
        ``wait``, return once the server has prepared every picture."""
        from ...api.client import _dry_run, _upload_sources

        pre_failures: list[FileError] = []
        sources = _upload_sources(items, None, subfolders, process_options, pre_failures)
        if dry_run:
            result = await _dry_run(sources)
        else:
            scope = await self.check()
            uploader = PanoramaxUploader(
                self.api,
                scope=scope,
                journal=self.journal,
                concurrency=self.concurrency,
                readahead=self.readahead,
                buffer_bytes=self.buffer_bytes,
                reupload=reupload,
                progress=progress,
                wait=wait,
                wait_progress=wait_progress,
            )
            result = await uploader.run(sources)
        for e in pre_failures:
            (result.duplicates if isinstance(e, DuplicateError) else result.failures).append(e)
        return result
