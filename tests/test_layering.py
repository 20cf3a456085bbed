"""Import boundaries: the product never imports ``research``; data never imports evaluation."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(package: str) -> dict[str, set[str]]:
    """Per file under ``package``: the modules it imports (statically or through
    ``importlib.import_module`` / ``__import__`` of a literal name), made absolute."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = module.split(".")[: -node.level]
                    base = ".".join([*parent, base] if base else parent)
                names.add(base)
                names.update(f"{base}.{alias.name}" for alias in node.names)
            elif (isinstance(node, ast.Call) and node.args
                  and isinstance(node.args[0], ast.Constant)
                  and isinstance(node.args[0].value, str)
                  and getattr(node.func, "attr", getattr(node.func, "id", None))
                  in ("import_module", "__import__")):
                names.add(node.args[0].value)
        found[str(path.relative_to(ROOT))] = names
    return found


def _offenders(package: str, forbidden: str) -> dict[str, list[str]]:
    return {path: sorted(n for n in names if n == forbidden or n.startswith(forbidden + "."))
            for path, names in imported_modules(package).items()
            if any(n == forbidden or n.startswith(forbidden + ".") for n in names)}


def test_the_checker_sees_imports_of_every_kind():
    names = imported_modules("research")["research/__init__.py"]
    assert "research.rec_attention" in names  # a relative-free "from research import x"
    assert _offenders("research", "rgpt_model")  # research builds on the product


def test_the_model_library_never_imports_ros():
    for ros in ("rclpy", "rosidl_runtime_py", "regiongpt_ros", "rgpt_ros", "launch"):
        assert _offenders("rgpt_model", ros) == {}, ros
        assert _offenders("research", ros) == {}, ros


def test_the_node_tooling_loads_no_torch():
    """The launch file, the parameter table, the client and the bag tools check and move data
    without loading torch (seconds of start-up, GBs of a GPU build); only the node's model
    does."""
    modules = ["rgpt_ros.launch_arguments", "rgpt_ros.parameters", "rgpt_ros.client",
               "rgpt_ros.conversions", "rgpt_ros.bag_player", "rgpt_ros.bag_recorder",
               "rgpt_ros.rosbag2_writer", "rgpt_ros.demo_bag"]
    code = (f"import sys; [__import__(m) for m in {modules!r}]; "
            "print([m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]", done.stdout[:300]


def test_product_packages_never_import_research():
    assert _offenders("rgpt_model", "research") == {}
    assert _offenders("rgpt_ros", "research") == {}


def test_loading_a_config_and_the_trainer_imports_no_research_module():
    code = ("import sys; from rgpt_model.training.config import load_config; "
            "import rgpt_model.training.train; load_config(None); "
            "print([m for m in sys.modules if m.split('.')[0] == 'research'])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_data_package_never_imports_evaluation():
    assert _offenders("rgpt_model/data", "rgpt_model.evaluation") == {}
