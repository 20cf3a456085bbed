#!/usr/bin/env bash
# The main job: start the RegionGPT node on the built-in demo model, replay the demo bag through
# it, print region descriptions and referring answers, record the outputs, print a summary.
# Options go to the demo (python -m rgpt_ros.demo --help lists them).
set -eo pipefail
# shellcheck disable=SC1091
source "$(dirname "${BASH_SOURCE[0]}")/isolated_env.sh"
exec python -m rgpt_ros.demo "$@"
