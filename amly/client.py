"""The public asyncio API and the one door to the network:
``async with amly.Client() as client: await client.upload(...)``.

Every verb of the CLI reaches every service through a :class:`Client`: it owns the
:class:`~amly.net.Transport` (sessions, the one retry policy, the rate limiters), resolves the
token once (``MAPILLARY_ACCESS_TOKEN``, the saved profile, a login: all on the event loop's
terms, nothing blocking it), and hands them to the services that do the work.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Endpoints, Secret
from .errors import DuplicateError, FileError
from .journal import Journal
from .net import Limits, RetryPolicy, Transport
from .net.flow import prefetch
from .pipeline import Options, Report
from .pipeline.inputs import upload_sources
from .services import mapillary
from .services.upload import (
    DEFAULT_BUFFER_BYTES,
    DEFAULT_CONCURRENCY,
    DEFAULT_READAHEAD,
    ProgressCallback,
    SequenceResult,
    Target,
    Uploader,
    UploadResult,
)
from .storage import Sink
from .types import BBox, Point, UploadSequence

if TYPE_CHECKING:
    from .services.panoramax import PanoramaxAPI, PanoramaxTarget

#: Finished sequences processing may hold ahead of the uploads.
PREFETCH_SEQUENCES = 64


class Client:
    """A Mapillary (or amly server) client.

    ``endpoint`` names an amly server base URL; otherwise the ``MAPILLARY_*`` endpoint
    variables, else the real service. ``token`` (str or :class:`~amly.Secret`) defaults to
    ``MAPILLARY_ACCESS_TOKEN``, then the ``profile`` saved by ``amly auth``, then a login
    with ``MAPILLARY_EMAIL``/``MAPILLARY_PASSWORD``. ``journal`` is a path, a
    :class:`~amly.journal.Journal`, ``None`` (the default journal) or ``False`` (no resume
    records). ``concurrency`` bounds transfers in flight (all sequences together),
    ``buffer_bytes`` the bytes of photos held in memory at once; ``limits`` and ``policy``
    are the rate limits and the retry policy every request obeys.

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
        concurrency: int = DEFAULT_CONCURRENCY,
        readahead: int = DEFAULT_READAHEAD,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        journal: str | os.PathLike[str] | Journal | bool | None = None,
        endpoints: Endpoints | None = None,
        limits: Limits | None = None,
        policy: RetryPolicy | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.endpoints = endpoints or Endpoints.from_env(endpoint)
        self._profile = profile
        self.concurrency = concurrency
        self.readahead = readahead
        self.buffer_bytes = buffer_bytes
        self._journal_arg = journal
        self._journal: Journal | None = None
        self.transport = Transport(
            self.endpoints,
            Secret(token) if isinstance(token, str) else token,
            concurrency=max(concurrency, 8) + 8,
            policy=policy,
            limits=limits,
            timeout=timeout,
        )
        self._token_lock: asyncio.Lock | None = None

    async def __aenter__(self) -> Client:
        await self.transport.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.transport.__aexit__(*exc)
        if self._journal is not None and not isinstance(self._journal_arg, Journal):
            self._journal.close()
        self._journal = None

    # -- shared plumbing ------------------------------------------------------------------------

    async def token(self) -> Secret:
        """The access token, resolved once (an :class:`~amly.AuthError` when there is none)."""
        if self.transport.token is None:
            if self._token_lock is None:
                self._token_lock = asyncio.Lock()
            async with self._token_lock:
                if self.transport.token is None:
                    self.transport.token = await mapillary.resolve_token(
                        self.transport, self._profile
                    )
        return self.transport.token

    @property
    def journal(self) -> Journal | None:
        """The resume journal (opened on first use; ``None`` with ``journal=False``)."""
        if self._journal is None and self._journal_arg is not False:
            arg = self._journal_arg
            if isinstance(arg, Journal):
                self._journal = arg
            else:
                path = None if arg is None or arg is True else arg
                self._journal = Journal(path)
        return self._journal

    async def me(self) -> dict[str, Any]:
        """``{"id", "username"}`` of the token's user (checks the token)."""
        await self.token()
        return await mapillary.me(self.transport)

    async def login(self, email: str, password: Secret) -> tuple[Secret, str]:
        """Log in with email and password (``POST /login``): ``(token, user id)``; the
        client uses that token from now on."""
        token, user_id = await mapillary.login(self.transport, email, password)
        self.transport.token = token
        return token, user_id

    # -- upload ---------------------------------------------------------------------------------

    def mapillary_target(self) -> mapillary.MapillaryTarget:
        """The Mapillary upload protocol over this client's transport."""
        return mapillary.MapillaryTarget(self.transport)

    def panoramax_target(
        self, api_url: str, token: str | Secret | None = None, *, profile: str | None = None
    ) -> PanoramaxTarget:
        """The Panoramax upload protocol for the instance at ``api_url`` over this client's
        transport (:class:`~amly.services.panoramax.PanoramaxTarget`). ``token``: by default
        ``PANORAMAX_TOKEN``, then the profile ``amly auth --service panoramax`` saved for this
        instance, else none (instances with auth off take anonymous uploads)."""
        from .services import panoramax

        return panoramax.PanoramaxTarget(self.panoramax(api_url, token, profile=profile))

    def panoramax(
        self, api_url: str, token: str | Secret | None = None, *, profile: str | None = None
    ) -> PanoramaxAPI:
        """The Panoramax API of the instance at ``api_url`` over this client's transport
        (:class:`~amly.services.panoramax.PanoramaxAPI`); the token as for
        :meth:`panoramax_target`."""
        from .services import panoramax

        if token is None:
            token = panoramax.resolve_token(api_url, profile)
        secret = Secret(token) if isinstance(token, str) else token
        return panoramax.PanoramaxAPI(self.transport, api_url, secret)

    def panoramax_images(
        self, api_url: str, bbox: Iterable[float]
    ) -> AsyncIterator[dict[str, Any]]:
        """``async for item in client.panoramax_images(url, bbox)``: every STAC item (picture)
        of the box on a Panoramax instance, page after page."""
        from .services.mapillary.query import check_bbox
        from .services.panoramax import download

        return download.search(self.panoramax(api_url), check_bbox(bbox))

    async def panoramax_download_images(
        self,
        api_url: str,
        bbox: Iterable[float],
        out: str | os.PathLike[str] | Sink,
        **options: Any,
    ) -> mapillary.DownloadResult:
        """Download the box's pictures from a Panoramax instance into ``out`` (resumable; EXIF
        written; ``index.geojson``): :func:`amly.services.panoramax.download.download_images`
        (``size``: hd, sd or thumb; ``max_results``; ``on_image``)."""
        from .services.mapillary.query import check_bbox
        from .services.panoramax import download

        sink = out if not isinstance(out, (str, os.PathLike)) else os.fspath(out)
        options.setdefault("concurrency", self.concurrency)
        return await download.download_images(
            self.panoramax(api_url), check_bbox(bbox), sink, **options
        )

    async def upload(
        self,
        items: Iterable[Any] | AsyncIterable[Any],
        *,
        target: Target | None = None,
        process: Options | None = None,
        reprocess: bool = False,
        organization_id: str | None = None,
        subfolders: bool = False,
        reupload: bool = False,
        dry_run: bool = False,
        progress: ProgressCallback | None = None,
        on_sequence: Callable[[UploadSequence], None] | None = None,
    ) -> UploadResult:
        """Upload folders, description files, zip files, :class:`~amly.Sequence` or
        :class:`~amly.types.UploadSequence` objects (an async iterable uploads while it is
        still being produced) to ``target`` (Mapillary by default).

        A folder without a description file is processed in memory first, with ``process``
        (options; the photos are not changed); with ``reprocess`` every folder is, description
        file or not. Each folder's sequences start uploading while later folders are still
        being processed (that is ``process-and-upload``). Returns per-sequence results
        (cluster ids); raises :class:`~amly.AuthError` for a bad token and
        :class:`~amly.APIError` when the server keeps failing beyond the retry policy. ``on_sequence`` sees each sequence as it
        enters the upload (images with the descriptions they carry: a report's input).
        """
        failures: list[FileError] = []
        report = Report()
        sources = upload_sources(
            items,
            organization_id=organization_id,
            subfolders=subfolders,
            process=process,
            reprocess=reprocess,
            failures=failures,
            report=report,
        )
        if on_sequence is not None:
            sources = _observed(sources, on_sequence)
        if dry_run:
            result = await _dry_run(sources)
        else:
            if target is None:
                await self.token()
                target = self.mapillary_target()
            uploader = Uploader(
                target,
                journal=self.journal,
                concurrency=self.concurrency,
                readahead=self.readahead,
                buffer_bytes=self.buffer_bytes,
                reupload=reupload,
                progress=progress,
            )
            # Processing runs ahead of the uploads (a bounded buffer of sequences), so the
            # pool keeps reading while the uploader waits for free slots.
            result = await uploader.run(prefetch(sources, PREFETCH_SEQUENCES))
        result.processed = report.images
        for e in [*failures, *report.errors]:
            (result.duplicates if isinstance(e, DuplicateError) else result.failures).append(e)
        return result

    # -- download -------------------------------------------------------------------------------

    async def images(
        self,
        bbox: Iterable[float],
        *,
        fields: Iterable[str] = (),
        method: str = "tiles",
        max_results: int | None = None,
        filters: mapillary.Filters | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """``async for image in client.images(bbox, fields=[...])``: every image exactly in
        the box (west, south, east, north) as an entity dict, each once, unordered.
        ``filters``: capture time range, creator, panoramas, organization."""
        await self.token()
        async for image in mapillary.images(
            self.transport,
            mapillary.check_bbox(bbox),
            fields=fields,
            filters=filters,
            method=method,
            max_results=max_results,
        ):
            yield image

    async def download_images(
        self,
        bbox: Iterable[float],
        out: str | os.PathLike[str] | Sink,
        *,
        size: str | int = "1024",
        filters: mapillary.Filters | None = None,
        method: str = "tiles",
        max_results: int | None = None,
        search_limit: int = mapillary.SEARCH_LIMIT,
        on_image: Callable[[str, str], None] | None = None,
    ) -> mapillary.DownloadResult:
        """Download the box's images into ``out`` (a folder or a :class:`~amly.storage.Sink`)
        with EXIF written, plus ``index.geojson``; resumable. Checks the token first."""
        await self.me()
        return await mapillary.download_images(
            self.transport,
            bbox,
            out,
            size=size,
            filters=filters,
            method=method,
            max_results=max_results,
            concurrency=self.concurrency,
            search_limit=search_limit,
            on_image=on_image,
        )

    async def download_gpx(
        self,
        bbox: Iterable[float],
        out: str | os.PathLike[str] | Sink,
        *,
        username: str | None = None,
        max_results: int | None = None,
        method: str = "tiles",
    ) -> mapillary.GpxResult:
        """One GPX file per sequence with images in the box. Checks the token first."""
        await self.me()
        return await mapillary.download_gpx(
            self.transport,
            bbox,
            out,
            username=username,
            max_results=max_results,
            concurrency=min(self.concurrency, 16),
            method=method,
        )

    async def sequence_track(self, sequence_id: str) -> list[Point]:
        """The time-ordered :class:`~amly.Point` list of a sequence's images."""
        await self.token()
        return await mapillary.sequence_track(self.transport, sequence_id)


async def _observed(
    sources: AsyncIterator[UploadSequence], on_sequence: Callable[[UploadSequence], None]
) -> AsyncIterator[UploadSequence]:
    async for seq in sources:
        on_sequence(seq)
        yield seq


async def _dry_run(sources: AsyncIterator[UploadSequence]) -> UploadResult:
    """What would be uploaded (sizes of the files as they are on disk); no network."""
    result = UploadResult()
    async for seq in sources:
        if seq.video is not None:
            paths = [seq.video.path]
        else:
            paths = [seq.zip_path] if seq.zip_path else [i.path for i in seq.images]
        res = SequenceResult(seq.name, images=seq.size, paths=paths, video=seq.video is not None)
        res.bytes = await asyncio.to_thread(_total_size, paths)
        result.sequences.append(res)
    return result


def _total_size(paths: list[str]) -> int:
    return sum(Path(p).stat().st_size for p in paths if os.path.exists(p))


__all__ = ["BBox", "Client"]
