"""The README's main job: ``amly demo`` runs end to end and reports what arrived."""

from __future__ import annotations

import json
import subprocess
import sys


def test_demo_uploads_every_sequence(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "amly",
            "demo",
            "--images",
            "60",
            "--size",
            "320x180",
            "--json",
            "--dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={"AMLY_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    # 3 trips, the parking gap splits one: 4 sequences; the truncated photo is the only failure.
    assert summary["counts"]["sequences"] == 4
    assert summary["counts"]["failed"] == 1
    assert "truncated" in summary["failures"][0]["error"]
    assert summary["counts"]["duplicates"] > 0
    assert len(summary["cluster_ids"]) == 4
    assert summary["counts"]["images"] == 60 - 1 - summary["counts"]["duplicates"]
