"""The README's asyncio example runs as written (against our server instead of :8080)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from amly.server.testing import running_server
from amly.synth import DrivePlan, drive, write_photos

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_asyncio_example(tmp_path: Path) -> None:
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert code, "README has no python example"
    write_photos(tmp_path / "photos", drive(DrivePlan(n=20, speed=5.0)), size=(160, 90))
    with running_server(tmp_path / "server") as srv:
        script = code.group(1).replace("http://127.0.0.1:8080", srv.url)
        env = {
            **os.environ,
            "MAPILLARY_ACCESS_TOKEN": srv.token,
            "AMLY_HOME": str(tmp_path / "home"),
        }
        out = subprocess.run(
            [sys.executable, "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert out.returncode == 0, out.stderr
    assert "clusters: ['" in out.stdout
    assert "20 points" in out.stdout
    assert len(list((tmp_path / "out").rglob("*.jpg"))) == 20
    assert srv.token not in out.stdout + out.stderr
