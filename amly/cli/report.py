"""``amly report PATH...``: one self-contained HTML map of what amly did (and a PNG).

PATH is a folder processed by ``amly process`` (or its ``mapillary_image_description.json``,
the official tool's too), a folder of ``amly download images`` (or its ``index.geojson``), or
an upload's ``--json`` summary (cluster ids per sequence). The page opens by double-click,
works offline (an OpenStreetMap basemap is drawn behind the map only when the viewer is
online) and stays small: 50,000 photos are a few megabytes.
"""

from __future__ import annotations

import argparse
import os
import sys

from ._common import Summary
from ._options import add_output_options

EPILOG = """examples:
  amly report trip/                               # after 'amly process trip/'
  amly report day1/ day2/ upload.json -o week.html --thumbnails
  amly process-and-upload trip/ --json > upload.json && amly report trip/ upload.json
  amly report box/ --png box.png                  # after 'amly download images ... box/'

exit codes: 0 written, 1 written but some PATH could not be read, 2 nothing readable
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="an HTML map (and PNG) of processed, uploaded or downloaded photos",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "paths",
        metavar="PATH",
        nargs="+",
        help="processed folder, description file, download folder/index.geojson, upload --json",
    )
    p.add_argument("-o", "--output", default="report.html", metavar="HTML", help="[report.html]")
    p.add_argument("--png", metavar="FILE", help="also write a PNG snapshot of the map")
    p.add_argument(
        "--thumbnails",
        action="store_true",
        help="embed a small thumbnail of each local photo (a few KB per photo)",
    )
    p.add_argument("--title", help="the page's title [the PATHs' names]")
    add_output_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import report
    from ..errors import UsageError

    summary = Summary("report")
    rep = report.Report(title=args.title or report._title(args.paths))
    for path in args.paths:
        try:
            kind = rep.add(path)
        except report.ReportInputError as e:
            summary.fail(str(e) + (f" ({e.hint})" if e.hint else ""), path=path, kind="input")
            continue
        summary.count(kind)
    data = rep.finish()
    if not any(summary.counts.get(k) for k in ("description", "index", "upload")):
        for f in summary.failures:
            print(f"amly: {f['error']}", file=sys.stderr)
        raise UsageError("nothing to report: no PATH could be read")
    target = args.output
    try:
        size = rep.write_html(args.output, thumbnails=args.thumbnails)
        if args.png:
            target = args.png
            rep.write_png(args.png)
    except OSError as e:
        raise UsageError(
            f"cannot write {target}: {e.strerror or 'I/O error'}",
            hint="give a path in a folder that exists and is writable",
        ) from None
    summary.count("photos", data.photos)
    summary.count("sequences", len(data.sequences))
    summary.info["html"] = os.path.abspath(args.output)
    summary.info["html_bytes"] = size
    if args.png:
        summary.info["png"] = os.path.abspath(args.png)
    if not args.quiet and not args.json:
        print(f"report: {os.path.abspath(args.output)}", file=sys.stderr)
    return summary.emit(args)
