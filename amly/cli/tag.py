"""``amly tag``: write the Mapillary description into each photo's EXIF ImageDescription.

The description is what ``describe`` derives from the photo (position, time, direction,
camera) plus ``MAPSequenceUUID`` and, with ``--organization``, ``MAPOrganizationKey``. Without
``--sequence-id`` photos are cut into sequences (folder and camera, 100 m / 60 s cutoffs)
and each sequence gets a stable id. Only the EXIF segment changes (lossless, atomic).

Uploads never embed these extra keys as such: the uploader keeps only the allowed ``MAP*``
keys (``amly.description.embeddable``) and passes sequence and organization separately.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from ..errors import UsageError
from ..types import ImageMeta
from ._inplace import read_dir, usable, write_each
from ._options import add_output_options, add_timezone_option

EPILOG = """\
examples:
  amly tag photos/
  amly tag photos/ --sequence-id 7f3c2d1e-street-survey
  amly tag photos/ --organization 1234567890

exit codes: 0 all photos tagged, 1 some photos failed (listed, not modified), 2 bad arguments
"""

SEQUENCE_ID = re.compile(r"^[A-Za-z0-9_-]+$")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tag",
        help="write the Mapillary description (+ sequence, organization) into photos",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dir", metavar="DIR", help="folder of geotagged JPEGs (subfolders included)")
    p.add_argument(
        "--sequence-id",
        metavar="ID",
        help="one sequence id for all photos (letters, digits, _ and -) [one per sequence]",
    )
    p.add_argument("--organization", metavar="KEY", help="organization key to record")
    add_timezone_option(p)
    add_output_options(p)
    p.set_defaults(func=run)


def _write_description(item: tuple[str, str]) -> str:
    from ..metadata import update_exif

    path, text = item
    update_exif(path, description=text)
    return path


def descriptions(
    images: list[ImageMeta], sequence_id: str | None, organization: str | None
) -> list[tuple[str, dict[str, Any]]]:
    """(path, description) for every image; sequences cut as ``process`` does (no dedup)."""
    from .. import sequence
    from ..description import describe
    from ..pipeline import sequence_uuid

    out = []
    for group in sequence.group_images(images):
        for s in sequence.split_sequences(group):
            if not s:
                continue
            sid = sequence_id or sequence_uuid(s)
            for m in s:
                d = describe(m)
                d["MAPSequenceUUID"] = sid
                if organization:
                    d["MAPOrganizationKey"] = organization
                out.append((m.path, d))
    return out


def run(args: argparse.Namespace) -> int:
    from ..description import dumps
    from ..metadata import parse_timezone
    from ..pipeline import Pool

    if args.sequence_id is not None and not SEQUENCE_ID.match(args.sequence_id):
        raise UsageError(
            f"bad sequence id {args.sequence_id!r}", hint="use letters, digits, '_' and '-'"
        )
    tz = parse_timezone(args.timezone)
    with Pool() as pool:
        summary, images, errors, _ = read_dir(args, "tag", tz=tz, pool=pool)
        located = usable(images, errors, hint="geotag it first")
        for err in errors:
            summary.fail(err)
        items = [
            (path, dumps(d))
            for path, d in descriptions(located, args.sequence_id, args.organization)
        ]
        write_each(args, summary, pool, _write_description, items, label="tagging", count="tagged")
    summary.info["sequence_id"] = args.sequence_id
    summary.info["organization"] = args.organization
    return summary.emit(args)
