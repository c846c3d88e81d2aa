"""Fill a server store with synthetic imagery, so downloads can be tested at scale without
uploading first (``amly server seed``).

Sequences are plausible drives: a start inside the box, ~2 s / ~15 m between photos, a
slowly wandering heading that bounces off the box edges. Images get every field the read side
serves (capture time, compass and computed values, altitude, camera, pano flag, creator,
organization). A *dense cell* adds many images inside one small box, more than a single
search may return, to exercise split-on-limit logic in clients.

Everything derives from ``seed``: the same arguments give the same ids and positions. Rows
go in with ``executemany`` in one transaction (10k images in well under a second).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sqlite3
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from ..geo import validate_bbox
from ..types import BBox
from .store import Store

__all__ = ["register_cli", "run_seed", "seed_store"]

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_M_PER_DEG = 111_195.0
#: (make, model, camera_type, width, height, is_pano), picked per sequence.
CAMERAS = [
    ("Apple", "iPhone 12", "perspective", 4032, 3024, False),
    ("GoPro", "HERO8 Black", "fisheye", 4000, 3000, False),
    ("samsung", "SM-G991B", "perspective", 4000, 2252, False),
    ("Sony", "DSC-RX100M5", "perspective", 5472, 3648, False),
    ("GoPro", "GoPro Max", "spherical", 5760, 2880, True),
    ("Insta360", "ONE X2", "spherical", 6080, 3040, True),
]
_START = datetime(2018, 1, 1, tzinfo=timezone.utc).timestamp()
_END = datetime(2025, 12, 1, tzinfo=timezone.utc).timestamp()


def _sequence_id(rnd: random.Random) -> str:
    return "".join(rnd.choice(_BASE62) for _ in range(22))


def _image_id(rnd: random.Random, used: set[str]) -> str:
    while True:
        i = str(rnd.randrange(10**15, 10**16))
        if i not in used:
            used.add(i)
            return i


def _walk(
    rnd: random.Random, box: BBox, n: int, step_m: float
) -> Iterator[tuple[float, float, float]]:
    """``n`` positions (lon, lat, heading) of a drive that stays inside ``box``."""
    w, s, e, nn = box
    lon, lat = rnd.uniform(w, e), rnd.uniform(s, nn)
    heading = rnd.uniform(0, 360)
    for _ in range(n):
        yield lon, lat, heading
        heading = (heading + rnd.gauss(0, 6)) % 360
        dlat = step_m * math.cos(math.radians(heading)) / _M_PER_DEG
        dlon = step_m * math.sin(math.radians(heading)) / (_M_PER_DEG * math.cos(math.radians(lat)))
        # Bounce off the edges: reflect the heading (a U-turn at the end of the road).
        if not w <= lon + dlon <= e:
            heading = (360 - heading) % 360
            dlon = -dlon
        if not s <= lat + dlat <= nn:
            heading = (180 - heading) % 360
            dlat = -dlat
        lon = min(e, max(w, lon + dlon))
        lat = min(nn, max(s, lat + dlat))


def seed_store(
    store: Store,
    n: int,
    bbox: BBox,
    *,
    sequences: int | None = None,
    dense_cell: BBox | None = None,
    dense_images: int = 2500,
    seed: int = 0,
    users: int = 3,
    organizations: int = 2,
    pano_share: float = 0.15,
    org_share: float = 0.3,
) -> dict[str, Any]:
    """Insert ``n`` synthetic images in ``bbox`` (+ ``dense_images`` in ``dense_cell``).

    Returns a summary: counts, the user names and organization ids used, the elapsed seconds.
    Raises ``ValueError`` for bad arguments or when this ``seed`` was already used on the store
    (the ids collide).
    """
    box = validate_bbox(bbox)
    if n < 0 or users < 1:
        raise ValueError("need n >= 0 images and at least 1 user")
    cell = validate_bbox(dense_cell) if dense_cell is not None else None
    if cell is not None and dense_images < 1:
        raise ValueError("dense_images must be at least 1")
    t0 = time.perf_counter()
    rnd = random.Random(seed)
    n_seq = sequences if sequences is not None else max(1, math.ceil(n / 250)) if n else 0
    if n and not 1 <= n_seq <= n:
        raise ValueError(f"sequences must be between 1 and the image count {n}, got {n_seq}")

    db = store.db
    user_rows = [
        (str(10**14 + seed * 1000 + k), f"seed_user_{seed}_{k}" if seed else f"seed_user_{k}")
        for k in range(users)
    ]
    orgs = [str(10**14 + 500 + seed * 1000 + k) for k in range(organizations)]

    # Plan the sequences: (box, size, step); the dense cell gets its own few sequences.
    plans: list[tuple[BBox, int, float]] = []
    if n_seq:
        cuts = sorted(rnd.sample(range(1, n), n_seq - 1)) if n_seq > 1 else []
        bounds = [0, *cuts, n]
        plans += [(box, bounds[k + 1] - bounds[k], 15.0) for k in range(n_seq)]
    if cell is not None:
        k = max(1, math.ceil(dense_images / 500))
        sizes = [dense_images // k + (1 if j < dense_images % k else 0) for j in range(k)]
        plans += [(cell, size, 4.0) for size in sizes]

    used: set[str] = set()
    seq_rows: list[tuple[Any, ...]] = []
    img_rows: list[tuple[Any, ...]] = []
    comp_rows: list[tuple[Any, ...]] = []
    created = time.time()
    for area, size, step in plans:
        sid = _sequence_id(rnd)
        uid = user_rows[rnd.randrange(users)][0]
        org = rnd.choice(orgs) if orgs and rnd.random() < org_share else None
        pano = rnd.random() < pano_share
        make, model, ctype, width, height, is_pano = rnd.choice(
            [c for c in CAMERAS if c[5] == pano]
        )
        seq_rows.append((sid, None, uid, org, created))
        t_ms = int(rnd.uniform(_START, _END)) * 1000
        alt0 = rnd.uniform(20, 400)
        for idx, (lon, lat, heading) in enumerate(_walk(rnd, area, size, step)):
            iid = _image_id(rnd, used)
            alt = round(alt0 + 3 * math.sin(idx / 20), 3)
            compass = round((heading + rnd.gauss(0, 8)) % 360, 3)
            img_rows.append(
                (iid, sid, idx, uid, org, t_ms, lon, lat, alt, compass,
                 make, model, width, height, int(is_pano), ctype)
            )  # fmt: skip
            # The SfM-corrected values: ~1 m off, heading close to the direction of travel.
            comp_rows.append(
                (iid, lon + rnd.gauss(0, 1e-5), lat + rnd.gauss(0, 1e-5),
                 round(alt + rnd.gauss(0, 1), 3), round((heading + rnd.gauss(0, 2)) % 360, 3))
            )  # fmt: skip
            t_ms += 2000 + rnd.randrange(-150, 150)

    db.execute("BEGIN")
    try:
        db.executemany("INSERT OR IGNORE INTO users (id, username) VALUES (?, ?)", user_rows)
        # The organizations images point at exist, so GET /{org_id} answers as for real ones.
        db.executemany(
            "INSERT OR IGNORE INTO organizations (id, slug, name, description)"
            " VALUES (?, ?, ?, '')",
            [
                (o, f"seed-org-{seed}-{k}", f"Seed organization {seed}-{k}")
                for k, o in enumerate(orgs)
            ],
        )
        db.executemany(
            "INSERT INTO sequences (id, cluster_id, user_id, organization_id, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            seq_rows,
        )
        db.executemany(
            "INSERT INTO images (id, sequence_id, seq_index, user_id, organization_id,"
            " captured_at, lon, lat, altitude, compass_angle, make, model, width, height,"
            " is_pano, camera_type) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            img_rows,
        )
        db.executemany(
            "INSERT INTO images_computed (id, lon, lat, altitude, compass_angle)"
            " VALUES (?, ?, ?, ?, ?)",
            comp_rows,
        )
        db.execute("COMMIT")
    except sqlite3.IntegrityError:
        db.execute("ROLLBACK")
        raise ValueError(
            f"ids collide with images already in the store (seeded with seed {seed} before?): "
            "use another --seed"
        ) from None
    except BaseException:
        db.execute("ROLLBACK")
        raise
    names = [
        r["username"]
        for r in db.execute(
            f"SELECT username FROM users WHERE id IN ({','.join('?' * len(user_rows))})",
            [u[0] for u in user_rows],
        )
    ]
    return {
        "images": len(img_rows),
        "sequences": len(seq_rows),
        "dense_images": dense_images if cell is not None else 0,
        "users": sorted(names),
        "organizations": orgs,
        "bbox": list(box),
        "dense_cell": list(cell) if cell is not None else None,
        "seed": seed,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _bbox_arg(text: str) -> BBox:
    try:
        parts = [float(v) for v in text.split(",")]
        if len(parts) != 4:
            raise ValueError(f"need 4 numbers, got {len(parts)}")
        return validate_bbox((parts[0], parts[1], parts[2], parts[3]))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"bad bbox {text!r} (W,S,E,N): {e}") from None


def register_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``seed`` to the subcommands of ``amly server``; returns its parser."""
    p = subparsers.add_parser(
        "seed",
        help="fill a server data dir with synthetic imagery",
        description="Fill a server data dir with synthetic sequences of images (no files: "
        "thumbnails are generated on the fly), for testing downloads at scale.",
    )
    p.add_argument("--data", required=True, metavar="DIR", help="server data directory")
    p.add_argument("--images", type=int, default=1000, metavar="N", help="images (default 1000)")
    p.add_argument("--bbox", type=_bbox_arg, required=True, metavar="W,S,E,N")
    p.add_argument("--sequences", type=int, metavar="M", help="default: one per ~250 images")
    p.add_argument(
        "--dense-cell",
        type=_bbox_arg,
        metavar="W,S,E,N",
        help="also put --dense-images images inside this (small) box",
    )
    p.add_argument("--dense-images", type=int, default=2500, metavar="K", help="default 2500")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--users", type=int, default=3, metavar="K", help="creators (default 3)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run_seed)
    return p


def run_seed(args: argparse.Namespace) -> int:
    """The ``amly server seed`` verb: exit 0, or 2 on bad arguments."""
    store = Store(args.data)
    try:
        summary = seed_store(
            store,
            args.images,
            args.bbox,
            sequences=args.sequences,
            dense_cell=args.dense_cell,
            dense_images=args.dense_images,
            seed=args.seed,
            users=args.users,
        )
    except ValueError as e:
        print(f"amly server seed: {e}", file=sys.stderr)
        return 2
    finally:
        store.close()
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"seeded {summary['images']} images in {summary['sequences']} sequences "
            f"({summary['seconds']} s) into {args.data}; users: {', '.join(summary['users'])}"
        )
    return 0
