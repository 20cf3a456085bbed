#!/usr/bin/env bash
# Reproduce the built-in demo model: train a small RGPT from scratch on synthetic scenes
# (rgpt_model/configs/demo.yaml; about 14.5 h on a 2-core CPU; on a GPU machine add
# --set data_workers=N for its cores), export it to rgpt_model/demo_model/
# and write rgpt_model/demo_model/eval_report.json (test split, 200 scenes). The config lists
# `plugins: [research]`: the trainer imports research/ (run from the repository root), which
# registers the REC attention and readout losses that stages 3-20 use.
# Extra arguments go to the trainer, e.g. --resume after an interruption.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f .venv/bin/activate ] && [ -z "${VIRTUAL_ENV:-}" ]; then source .venv/bin/activate; fi
OUT="${RGPT_DEMO_RUN_DIR:-runs/demo}"
EVAL_SCENES="${RGPT_DEMO_EVAL_SCENES:-200}"
python -m rgpt_model.training.train --config rgpt_model/configs/demo.yaml --output-dir "$OUT" \
    --export rgpt_model/demo_model --eval-scenes "$EVAL_SCENES" "$@"
du -sh rgpt_model/demo_model
