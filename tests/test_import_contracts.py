"""The house plan holds: the import contracts in pyproject.toml are kept, and no api module hides an
import inside a function (an import placed there to dodge a cycle still makes the cycle)."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
API_SRC = ROOT / "services" / "api" / "src" / "tonerwatch_api"


def test_lint_imports_keeps_every_contract() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint_imports), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # The api's layers and its HTTP-free core, the services' independence, the shared library's
    # isolation: every contract written down is checked and kept.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    assert len(contracts) >= 4
    assert f"Contracts: {len(contracts)} kept, 0 broken." in done.stdout, done.stdout


def test_no_api_module_imports_inside_a_function() -> None:
    hidden = []
    for path in sorted(API_SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                    names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
                    if any(n.startswith("tonerwatch") for n in names):
                        hidden.append(f"{path.relative_to(ROOT)}:{node.lineno} in {func.name}()")
    assert hidden == []
