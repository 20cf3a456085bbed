#!/usr/bin/env bash
# Reproduce a demo model: bash scripts/train_demo.sh [v2|v1] [trainer arguments...]
#
# v2 (the default): the built-in demo model, the issue-20 recipe (rgpt_model/configs/
#   demo_v2.yaml; about 5 h on a 2-core CPU): starts from v1's weights (pinned by sha256 in the
#   config), no silhouette encoder, pixel detail branch, exact/box/coarse training masks, mixed
#   scenes; exported to rgpt_model/demo_model/ with an evaluation under every issue-20
#   condition (eval_report.json, test split, 200 scenes per condition).
# v1: the previous demo model, a small RGPT trained from scratch on synthetic scenes
#   (rgpt_model/configs/demo.yaml; about 14.5 h on a 2-core CPU), exported to
#   rgpt_model/demo_model_v1/ (v2's warm start) with eval_report.json.
#
# Both configs list `plugins: [research]`: the trainer imports research/ (run from the
# repository root), which registers the REC attention and readout losses. On a GPU machine add
# --set data_workers=N for its cores. Extra arguments go to the trainer, e.g. --resume after
# an interruption. Environment overrides: RGPT_DEMO_CONFIG, RGPT_DEMO_RUN_DIR,
# RGPT_DEMO_EXPORT, RGPT_DEMO_EVAL_SCENES, RGPT_DEMO_EVAL_CONDITIONS.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f .venv/bin/activate ] && [ -z "${VIRTUAL_ENV:-}" ]; then source .venv/bin/activate; fi
RECIPE=v2
if [ "${1:-}" = v1 ] || [ "${1:-}" = v2 ]; then RECIPE="$1"; shift; fi
if [ "$RECIPE" = v2 ]; then
    CONFIG=rgpt_model/configs/demo_v2.yaml RUN=runs/demo_v2 EXPORT=rgpt_model/demo_model
    CONDITIONS=all
else
    CONFIG=rgpt_model/configs/demo.yaml RUN=runs/demo EXPORT=rgpt_model/demo_model_v1
    CONDITIONS=none
fi
CONFIG="${RGPT_DEMO_CONFIG:-$CONFIG}"
OUT="${RGPT_DEMO_RUN_DIR:-$RUN}"
EXPORT="${RGPT_DEMO_EXPORT:-$EXPORT}"
EVAL_SCENES="${RGPT_DEMO_EVAL_SCENES:-200}"
EVAL_CONDITIONS="${RGPT_DEMO_EVAL_CONDITIONS:-$CONDITIONS}"
python -m rgpt_model.training.train --config "$CONFIG" --output-dir "$OUT" \
    --export "$EXPORT" --eval-scenes "$EVAL_SCENES" --eval-conditions "$EVAL_CONDITIONS" "$@"
du -sh "$EXPORT"
