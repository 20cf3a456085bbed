# Sourced by run_tests.sh and run_demo.sh: enter the repository root and the environment that
# scripts/setup.sh built, with DDS isolated (a random domain, localhost-only discovery) so
# parallel runs on one machine never talk to each other.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ -f setup_env.sh ] || { echo "setup_env.sh missing: run 'bash scripts/setup.sh' first" >&2; exit 1; }
# shellcheck disable=SC1091
source setup_env.sh
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 101 ))}"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
