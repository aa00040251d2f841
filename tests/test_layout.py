"""The library stays readable: no function over 60 lines and no file over 400 in ``cjepa/``
(issue J), and question generation (scene records only) without the physics engine."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[1] / "cjepa"
MODULES = sorted(LIBRARY.rglob("*.py"))
MAX_FUNCTION_LINES = 60
MAX_FILE_LINES = 400


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(LIBRARY)))
def test_functions_and_files_are_short(path):
    source = path.read_text()
    lines = len(source.splitlines())
    assert lines <= MAX_FILE_LINES, f"{path.name}: {lines} lines; split it by responsibility"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path.name}: {long}"


def test_questions_and_scenes_import_without_the_physics_engine():
    code = (
        "import sys, cjepa.worlds.questions, cjepa.worlds.collide_scene, "
        "cjepa.worlds.collide_render; print('pymunk' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_test_files_have_unique_names():
    # tests/ has no __init__.py files, so pytest imports each test module by its file name: two
    # files with one name in different folders stop collection on a clean clone
    tests = Path(__file__).resolve().parent
    names: dict[str, list[str]] = {}
    for path in tests.rglob("test_*.py"):
        names.setdefault(path.name, []).append(str(path.relative_to(tests)))
    assert not {n: p for n, p in names.items() if len(p) > 1}
