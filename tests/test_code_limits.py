"""Size limits of the package's code: modules ≤ 500 lines, functions ≤ 80 lines.

What is over the limit today is listed with its current size: an entry may shrink
(and must be removed once it is within the limit), never grow, and nothing new may
join the lists. Each entry is a debt to pay (issue 17), not a licence.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREES = ("src/paratag", "processors", "training")
MODULE_LIMIT = 500
FUNCTION_LIMIT = 80

#: module → its line count today
KNOWN_MODULES: dict[str, int] = {}
#: (module, function) → its line count today
KNOWN_FUNCTIONS: dict[tuple[str, str], int] = {}


def _modules() -> list[Path]:
    files = [p for tree in TREES for p in sorted((ROOT / tree).rglob("*.py"))]
    assert len(files) > 60  # the walk sees the package
    return files


def test_modules_stay_within_500_lines() -> None:
    over = {}
    for path in _modules():
        n = len(path.read_text().splitlines())
        if n > MODULE_LIMIT:
            over[path.relative_to(ROOT).as_posix()] = n
    grown = {k: v for k, v in over.items() if v > KNOWN_MODULES.get(k, MODULE_LIMIT)}
    assert not grown, (
        f"modules over {MODULE_LIMIT} lines (or grown past their listed size): {grown}"
    )
    fixed = sorted(set(KNOWN_MODULES) - set(over))
    assert not fixed, f"within the limit now: remove {fixed} from KNOWN_MODULES"


def test_functions_stay_within_80_lines() -> None:
    over = {}
    for path in _modules():
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > FUNCTION_LIMIT:
                    over[(rel, node.name)] = max(n, over.get((rel, node.name), 0))
    grown = {k: v for k, v in over.items() if v > KNOWN_FUNCTIONS.get(k, FUNCTION_LIMIT)}
    assert not grown, f"functions over {FUNCTION_LIMIT} lines (or grown): {grown}"
    fixed = sorted(set(KNOWN_FUNCTIONS) - set(over))
    assert not fixed, f"within the limit now: remove {fixed} from KNOWN_FUNCTIONS"
