#!/usr/bin/env bash
# Run the test suite inside the environment that scripts/setup.sh built.
# Extra arguments go to pytest (e.g. -k refer, -m slow).
set -eo pipefail
# shellcheck disable=SC1091
source "$(dirname "${BASH_SOURCE[0]}")/isolated_env.sh"
ruff check rgpt_model rgpt_ros research tests scripts
python -m pytest -q "$@"
