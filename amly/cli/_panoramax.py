"""The Panoramax side of ``amly upload`` / ``process-and-upload`` (``--to panoramax``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import UsageError
from ._common import Progress, Summary, run_async


def check_upload_args(args: argparse.Namespace) -> None:
    if not args.api_url:
        raise UsageError(
            "--to panoramax needs --api-url URL", hint="e.g. https://panoramax.openstreetmap.fr"
        )
    if not str(args.api_url).startswith(("http://", "https://")):
        raise UsageError(f"--api-url must be an http(s) URL, not {args.api_url!r}")
    if args.organization_id is not None:
        raise UsageError("--organization-id is a Mapillary option")
    if args.endpoint:
        raise UsageError("--endpoint is a Mapillary option; use --api-url for Panoramax")


def run_upload(
    args: argparse.Namespace,
    paths: list[str] | None,
    options: Any,
    *,
    trees: list[str] | None,
    processed: Any,
) -> int:
    from ..services.panoramax import PanoramaxClient
    from .upload import _summarise

    summary = Summary("upload" if trees is None else "process-and-upload")
    show = not (args.no_progress or args.quiet)
    progress = Progress("upload", None, enabled=show)
    preparing = Progress("server preparing", None, enabled=show and args.wait)
    done = {"images": 0, "prepared": 0}

    def on_progress(p: Any) -> None:
        progress.total = p.images_total
        progress.label = f"upload {p.bytes_done / 1e6:,.1f} MB"
        progress.update(p.images_done - done["images"])
        done["images"] = p.images_done

    def on_wait(w: Any) -> None:
        preparing.total = w.total
        preparing.update(w.prepared - done["prepared"])
        done["prepared"] = w.prepared

    async def main() -> Any:
        async with PanoramaxClient(
            args.api_url,
            profile=args.profile,
            concurrency=args.concurrency,
            journal=args.journal,
        ) as client:
            items: Any = paths if trees is None else processed(trees, options, summary)
            return await client.upload(
                items,
                subfolders=getattr(args, "subfolders", False),
                reupload=args.reupload,
                dry_run=args.dry_run,
                progress=on_progress,
                process_options=options,
                wait=args.wait,
                wait_progress=on_wait,
            )

    try:
        result = run_async(main())
    finally:
        progress.close()
        preparing.close()
    _summarise(summary, result, args.dry_run)
    summary.info["upload_set_ids"] = summary.info.pop("cluster_ids", [])
    for entry, s in zip(summary.info.get("sequences", []), result.sequences, strict=False):
        entry["upload_set_id"] = entry.pop("cluster_id", None)
        entry["collections"] = getattr(s, "collections", [])
        entry["rejected"] = getattr(s, "rejected", 0)
        entry["ready"] = getattr(s, "ready", False)
    if not args.dry_run:
        summary.count("rejected", sum(getattr(s, "rejected", 0) for s in result.sequences))
        if args.wait:
            summary.count("ready_sets", sum(1 for s in result.sequences if getattr(s, "ready", 0)))
    if not summary.counts.get("images") and not summary.failures and not args.quiet:
        print("amly: nothing to upload", file=sys.stderr)
    return summary.emit(args)
