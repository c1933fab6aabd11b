"""The layout holds: ruff finds no mistakes (undefined names, unused imports and variables)
and the code is in ruff's format (`ruff format .` writes it);
the import-linter contracts in pyproject.toml are kept (the layers catalog -> embeddings -> ml,
no import cycle in any package, the model code imports no Django); every import below a
module's top level says why it is there; and mypy (with django-stubs) finds no type errors.
All read the source and run nothing; mypy takes about half a minute, the rest seconds."""

from __future__ import annotations

import ast
import os
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


def test_the_code_is_in_ruff_format() -> None:
    run = subprocess.run(
        [tool("ruff"), "format", "--check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True
    )
    assert run.returncode == 0, "run `ruff format .`:\n" + run.stdout + run.stderr


def test_the_import_contracts_are_kept() -> None:
    run = subprocess.run([tool("lint-imports"), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr


def local_imports() -> list[tuple[str, int, str]]:
    """(file, line, source) of every import below a module's top level in the site's packages,
    leaving out those under ``if TYPE_CHECKING:`` (annotations only, never run)."""
    found = []
    for package in ("ml", "embeddings", "catalog", "searchsite", "ops"):
        for path in sorted((REPO / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            source = path.read_text()
            tree = ast.parse(source)
            type_only = {
                id(node)
                for guard in ast.walk(tree)
                if isinstance(guard, ast.If) and ast.unparse(guard.test).endswith("TYPE_CHECKING")
                for stmt in guard.body
                for node in ast.walk(stmt)
            }
            lines = source.splitlines()
            for node in ast.walk(tree):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and node.col_offset > 0 and id(node) not in type_only:
                    found.append((str(path.relative_to(REPO)), node.lineno, lines[node.lineno - 1]))
    return found


def test_every_local_import_says_why() -> None:
    # Imports go at the top of a module. The exceptions (a heavy library only some processes
    # load, an import that must wait for Django's app registry) carry a comment saying why:
    # on the line, or above it (one comment may head a group of such imports).
    unexplained = []
    for file, line, source in local_imports():
        lines = (REPO / file).read_text().splitlines()
        above = line - 2
        while lines[above].strip().startswith(("import ", "from ")) and "#" not in lines[above]:
            above -= 1
        if "#" not in source and "#" not in lines[above]:
            unexplained.append(f"{file}:{line}: {source.strip()}")
    assert not unexplained, "function-local imports without a reason:\n" + "\n".join(unexplained)


def test_mypy_finds_no_type_errors() -> None:
    # Not incremental: the django-stubs plugin reads the settings' types, which a cache
    # kept from before a settings change can get wrong. `files` in pyproject.toml says what.
    run = subprocess.run(
        [tool("mypy"), "--no-incremental", "--cache-dir", os.devnull], cwd=REPO, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr
