"""The package's layering: the core library does not import the training application.

Walks every ``import`` statement (module level and inside functions) of the core
modules. The workflow layer (``cli``, ``demo``, ``validate``, ``jobs``) may use training;
``paratag.training`` and ``processors`` are the applications on top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import paratag

SRC = Path(paratag.__file__).parent
WORKFLOWS = {
    "cli.py",
    "cli_options.py",
    "demo.py",
    "validate.py",
    "validate_xbb.py",
    "jobs.py",
    "validation_summary.py",
    "validation_jets.py",
    "pipeline.py",
}
#: what the core still takes from training, and why (each entry is a debt to pay, not a licence)
ALLOWED: set[tuple[str, str, str]] = set()


def _training_imports(tree: ast.AST, where: str) -> set[tuple[str, str, str]]:
    """``(where, module, name)`` of every import of ``paratag.training`` in ``tree``."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("paratag.training") or (
                node.module == "paratag" and any(a.name == "training" for a in node.names)
            ):
                found |= {(where, node.module, a.name) for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {
                (where, a.name, "*") for a in node.names if a.name.startswith("paratag.training")
            }
    return found


def test_core_does_not_import_the_training_application() -> None:
    core = [p for p in SRC.rglob("*.py") if p.relative_to(SRC).as_posix() not in WORKFLOWS]
    assert len(core) > 30  # the walk sees the package
    found: set[tuple[str, str, str]] = set()
    for path in core:
        tree = ast.parse(path.read_text(), filename=str(path))
        found |= _training_imports(tree, path.relative_to(SRC).as_posix())
    assert found == ALLOWED, f"core modules import paratag.training: {sorted(found ^ ALLOWED)}"


def test_the_walk_sees_imports_inside_functions() -> None:
    code = (
        "def f():\n"
        "    from paratag.training.run import train\n"
        "    import paratag.training.loop\n"
        "    from paratag import training\n"
    )
    assert _training_imports(ast.parse(code), "m") == {
        ("m", "paratag.training.run", "train"),
        ("m", "paratag.training.loop", "*"),
        ("m", "paratag", "training"),
    }
