#!/usr/bin/env bash
# Run the test suite inside the environment that scripts/setup.sh built.
# Extra arguments go to pytest (e.g. -k refer, -m slow).
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ -f setup_env.sh ] || { echo "setup_env.sh missing: run 'bash scripts/setup.sh' first" >&2; exit 1; }
# shellcheck disable=SC1091
source setup_env.sh
# DDS isolation: a random domain per run and localhost-only discovery, so parallel runs never talk.
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 101 ))}"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
ruff check rgpt_model rgpt_ros tests scripts
python -m pytest -q "$@"
