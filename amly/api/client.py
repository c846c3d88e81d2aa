"""The public asyncio API: ``async with amly.Client() as client: await client.upload(...)``.

A thin facade: it owns the :class:`~amly.api._http.Transport` (sessions, retry policy, rate
limiters) and the journal, and hands them to the modules that do the work
(:mod:`amly.api.upload`, the search and download modules).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
from collections.abc import AsyncIterable, Iterable
from pathlib import Path
from typing import Any

from ..config import Endpoints, Secret
from ..errors import AuthError, DuplicateError, FileError
from ..journal import Journal
from ..types import Sequence
from . import upload as _upload
from ._http import Transport
from ._limits import Limits
from ._retry import RetryPolicy


class Client:
    """A Mapillary (or amly server) client.

    ``endpoint`` names an amly server base URL; otherwise the ``MAPILLARY_*`` endpoint
    variables, else the real service. ``token`` (str or :class:`~amly.Secret`) defaults to
    ``MAPILLARY_ACCESS_TOKEN``, then the ``profile`` saved by ``amly auth``. ``journal`` is a
    path, a :class:`~amly.journal.Journal`, ``None`` (the default journal) or ``False`` (no
    resume records). ``concurrency`` bounds uploads in flight (all sequences together),
    ``buffer_bytes`` the bytes of photos held in memory at once.

    >>> import asyncio
    >>> async def main():
    ...     async with Client("http://127.0.0.1:9", token="t" * 20, journal=False) as c:
    ...         return c.endpoints.upload
    >>> asyncio.run(main())
    'http://127.0.0.1:9/upload'
    """

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | Secret | None = None,
        *,
        profile: str | None = None,
        concurrency: int = _upload.DEFAULT_CONCURRENCY,
        readahead: int = _upload.DEFAULT_READAHEAD,
        buffer_bytes: int = _upload.DEFAULT_BUFFER_BYTES,
        journal: str | os.PathLike[str] | Journal | bool | None = None,
        endpoints: Endpoints | None = None,
        limits: Limits | None = None,
        policy: RetryPolicy | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.endpoints = endpoints or Endpoints.from_env(endpoint)
        self._token_arg = token
        self._profile = profile
        self.concurrency = concurrency
        self.readahead = readahead
        self.buffer_bytes = buffer_bytes
        self._journal_arg = journal
        self._journal: Journal | None = None
        self.transport = Transport(
            self.endpoints,
            None,
            concurrency=max(concurrency, 8),
            policy=policy,
            limits=limits,
            timeout=timeout,
        )
        self._scope: str | None = None

    async def __aenter__(self) -> Client:
        await self.transport.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.transport.__aexit__(*exc)
        if self._journal is not None and not isinstance(self._journal_arg, Journal):
            self._journal.close()
        self._journal = None

    # -- shared plumbing ------------------------------------------------------------------------

    @property
    def token(self) -> Secret:
        """The access token, resolved on first use (an :class:`AuthError` when there is none)."""
        if self.transport.token is None:
            if isinstance(self._token_arg, Secret):
                self.transport.token = self._token_arg
            elif self._token_arg:
                self.transport.token = Secret(self._token_arg)
            else:
                from .auth import resolve_token

                self.transport.token = resolve_token(self._profile, endpoints=self.endpoints)
        return self.transport.token

    @property
    def journal(self) -> Journal | None:
        if self._journal is None and self._journal_arg is not False:
            arg = self._journal_arg
            if isinstance(arg, Journal):
                self._journal = arg
            else:
                self._journal = Journal(None if arg in (None, True) else arg)  # type: ignore[arg-type]
        return self._journal

    async def me(self) -> dict[str, Any]:
        """``{"id", "username"}`` of the token's user (checks the token)."""
        self.token  # noqa: B018 - resolves (or raises) before any request
        answer = await self.transport.graph_get("me", {"fields": "id,username"})
        if not isinstance(answer, dict) or "id" not in answer:
            raise AuthError("the server did not say who this token belongs to")
        return answer

    async def _upload_scope(self) -> str:
        """Journal namespace: the upload service plus the account (handles and clusters of one
        account on one service mean nothing elsewhere). Checks the token early."""
        if self._scope is None:
            user = await self.me()
            ident = f"{self.endpoints.upload}|{user['id']}"
            self._scope = hashlib.md5(ident.encode()).hexdigest()[:16]
        return self._scope

    # -- upload ---------------------------------------------------------------------------------

    async def upload(
        self,
        items: Iterable[Any] | AsyncIterable[Any],
        *,
        organization_id: str | None = None,
        subfolders: bool = False,
        reupload: bool = False,
        dry_run: bool = False,
        progress: _upload.ProgressCallback | None = None,
        process_options: Any = None,
    ) -> _upload.UploadResult:
        """Upload folders, description files, zip files or :class:`~amly.Sequence` objects
        (an async iterable of sequences uploads while it is still being produced).

        A folder without a description file is processed in memory first (the photos are
        not changed). Returns per-sequence results (cluster ids); raises
        :class:`~amly.AuthError` for a bad token and :class:`~amly.APIError` when the
        server keeps failing beyond the retry policy.
        """
        pre_failures: list[FileError] = []
        sources = _upload_sources(items, organization_id, subfolders, process_options, pre_failures)
        if dry_run:
            result = await _dry_run(sources)
        else:
            scope = await self._upload_scope()
            uploader = _upload.Uploader(
                self.transport,
                scope=scope,
                journal=self.journal,
                concurrency=self.concurrency,
                readahead=self.readahead,
                buffer_bytes=self.buffer_bytes,
                reupload=reupload,
                progress=progress,
            )
            result = await uploader.run(sources)
        for e in pre_failures:
            (result.duplicates if isinstance(e, DuplicateError) else result.failures).append(e)
        return result

    # -- download (owner: download engineer; the work is in amly.api.search / .download) -------

    def images(
        self,
        bbox: Iterable[float],
        *,
        fields: Iterable[str] = (),
        method: str = "tiles",
        max_results: int | None = None,
        **filters: Any,
    ) -> Any:
        """``async for image in client.images(bbox=..., fields=[...])``: every image exactly in
        the box as an entity dict. ``filters``: ``start``, ``end`` (datetimes), ``username``,
        ``is_pano``, ``organization_id``. See :func:`amly.api.search.images`."""
        from . import search as _search

        self.token  # noqa: B018 - resolves (or raises) before any request
        return _search.images(
            self.transport,
            _search.check_bbox(bbox),
            fields=fields,
            filters=_search.Filters(**filters),
            method=method,
            max_results=max_results,
        )

    async def download_images(
        self, bbox: Iterable[float], out: str | os.PathLike[str], **options: Any
    ) -> Any:
        """Download the box's images into ``out`` (resumable; EXIF written). ``options``: see
        :func:`amly.api.download.download_images` (size, filters, method, max_results...)."""
        from . import download as _download

        self.token  # noqa: B018
        return await _download.download_images(self.transport, bbox, out, **options)

    async def sequence_track(self, sequence_id: str) -> Any:
        """The time-ordered :class:`~amly.Point` list of a sequence's images."""
        from . import download as _download

        self.token  # noqa: B018
        return await _download.sequence_track(self.transport, sequence_id)


async def _upload_sources(
    items: Iterable[Any] | AsyncIterable[Any],
    organization_id: str | None,
    subfolders: bool,
    process_options: Any,
    failures: list[FileError],
) -> Any:
    """Every input as :class:`UploadSequence` objects, lazily (processing streams)."""
    from .. import pipeline

    async for item in _upload._aiter(items):
        if isinstance(item, _upload.UploadSequence):
            yield item
        elif isinstance(item, Sequence):
            yield _upload.from_sequence(item, organization_id)
        elif isinstance(item, (str, os.PathLike)):
            try:
                descs, zips, raw = _upload.find_inputs([item], subfolders=subfolders)
            except FileError as e:
                failures.append(e)
                continue
            for d in descs:
                try:
                    seqs, _errors = _upload.from_description_file(d, organization_id)
                except FileError as e:
                    failures.append(e)
                    continue
                for s in seqs:
                    yield s
            for z in zips:
                try:
                    yield _upload.from_zip(z, organization_id)
                except FileError as e:
                    failures.append(e)
            if raw:
                opts = dataclasses.replace(
                    process_options or pipeline.Options(), recursive=subfolders
                )
                report = pipeline.Report()
                async for seq in pipeline.iter_sequences(raw, opts, report=report):
                    yield _upload.from_sequence(seq, organization_id)
                failures.extend(report.errors)
        else:
            raise TypeError(f"cannot upload {type(item).__name__}")


async def _dry_run(sources: Any) -> _upload.UploadResult:
    """What would be uploaded (sizes of the files as they are on disk); no network."""
    result = _upload.UploadResult()
    async for seq in sources:
        paths = [seq.zip_path] if seq.zip_path else [i.path for i in seq.images]
        res = _upload.SequenceResult(seq.name, images=seq.size, paths=paths)
        res.bytes = await asyncio.to_thread(_total_size, paths)
        result.sequences.append(res)
    return result


def _total_size(paths: list[str]) -> int:
    return sum(Path(p).stat().st_size for p in paths if os.path.exists(p))
