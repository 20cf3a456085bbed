"""The CMake path fix rewrites the wheel builder's include folders, and only those, once."""

from __future__ import annotations

import sysconfig
from pathlib import Path

from scripts.fix_ros_wheel_cmake import fix_prefix

EXPORT = (
    "set_target_properties(x PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "
    '"/opt/python/cp311-cp311/include/python3.11;'
    '/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include;${_IMPORT_PREFIX}/include")\n'
)


def test_rewrites_builder_paths_once(tmp_path: Path):
    target = tmp_path / "share" / "std_msgs" / "cmake" / "export.cmake"
    untouched = tmp_path / "share" / "other" / "cmake" / "plain.cmake"
    target.parent.mkdir(parents=True)
    untouched.parent.mkdir(parents=True)
    target.write_text(EXPORT)
    untouched.write_text("set(X 1)\n")

    assert fix_prefix(tmp_path, "/outside/numpy_include") == 1
    fixed = target.read_text()
    assert "/opt/python/" not in fixed
    assert sysconfig.get_paths()["include"] in fixed
    assert "/outside/numpy_include;${_IMPORT_PREFIX}/include" in fixed
    assert untouched.read_text() == "set(X 1)\n"
    assert fix_prefix(tmp_path, "/outside/numpy_include") == 0
