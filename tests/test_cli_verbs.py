"""Every verb exists, has --help with examples and the shared output options."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from amly.cli import VERBS


@pytest.mark.parametrize("verb", VERBS)
def test_verb_module_exists(verb: str) -> None:
    module = importlib.import_module(f"amly.cli.{verb}")
    assert callable(module.register)


@pytest.mark.parametrize("verb", [v.replace("_", "-") for v in VERBS])
def test_verb_help(verb: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "amly", verb, "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "usage: amly" in out.stdout


def test_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "amly", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.startswith("amly ")
