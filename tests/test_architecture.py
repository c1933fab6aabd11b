"""The layout holds: ruff finds no mistakes (undefined names, unused imports and variables),
and the import-linter contracts in pyproject.toml are kept (the model code imports no Django
and nothing of the site). Both read the source, run nothing, and take a few seconds."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            pytest.fail(f"{name} is not installed: pip install -e '.[dev]' (make setup)")
        return found
    return str(path)


def test_ruff_finds_no_mistakes() -> None:
    run = subprocess.run([tool("ruff"), "check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_import_contracts_are_kept() -> None:
    run = subprocess.run([tool("lint-imports"), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr
