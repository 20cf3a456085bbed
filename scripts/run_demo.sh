#!/usr/bin/env bash
# The main job: start the RegionGPT node on the built-in demo model, replay the demo bag through
# it, print region descriptions and referring answers, record the outputs, print a summary.
# Options go to the demo (python -m rgpt_ros.demo --help lists them).
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ -f setup_env.sh ] || { echo "setup_env.sh missing: run 'bash scripts/setup.sh' first" >&2; exit 1; }
# shellcheck disable=SC1091
source setup_env.sh
# DDS isolation: a random domain and localhost-only discovery, so parallel runs never talk.
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 101 ))}"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec python -m rgpt_ros.demo "$@"
