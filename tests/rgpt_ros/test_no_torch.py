"""rgpt_ros is a thin adapter: its own modules never import torch (the model library does)."""

from __future__ import annotations

import ast
from pathlib import Path

import rgpt_ros

HEAVY = ("torch", "transformers")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_rgpt_ros_module_imports_torch_or_transformers():
    files = sorted(Path(rgpt_ros.__file__).parent.glob("*.py"))
    assert len(files) > 10
    offenders = {f.name: sorted(_imports(f) & set(HEAVY)) for f in files}
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    import torch.cuda\n    from transformers import X\n")
    assert _imports(probe) >= {"torch", "transformers"}
