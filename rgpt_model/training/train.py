"""``python -m rgpt_model.training.train --config FILE``: train an RGPT run from a YAML config.

Writes ``<output_dir>/checkpoint-last`` (resumable with ``--resume``), ``train_log.jsonl``,
the effective ``train_config.yaml`` and, at the end, a loadable model in ``<output_dir>/final``
(or ``--export DIR``), optionally followed by an evaluation report. Aux losses and
augmentations come from the modules the config lists under ``plugins`` (imported first; e.g.
``research`` for the demo recipe's REC losses, importable from the repository root).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from rgpt_model.training.config import load_config
from rgpt_model.training.trainer import Trainer


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rgpt_model.training.train",
        description="Train RGPT (stage 1: refiner + connector; stage 2: + LLM, full or LoRA) "
                    "from a YAML run config.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", type=Path, required=True, help="YAML run config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set stages.0.steps=10 (repeatable)")
    p.add_argument("--output-dir", type=Path, default=None, help="override output_dir")
    p.add_argument("--resume", action="store_true",
                   help="continue from <output_dir>/checkpoint-last when it exists")
    p.add_argument("--export", type=Path, default=None,
                   help="where to save the final model (default <output_dir>/final)")
    p.add_argument("--export-only", action="store_true",
                   help="only export <output_dir>/checkpoint-last as a model directory")
    p.add_argument("--eval-scenes", type=int, default=0,
                   help="after training, evaluate on this many synthetic test scenes and write "
                        "eval_report.json into the exported model directory")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--log-level", default="INFO", help="logging level")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = list(args.overrides)
    if args.output_dir is not None:
        overrides.append(f"output_dir={args.output_dir}")
    cfg = load_config(args.config, overrides)
    trainer = Trainer(cfg, progress=not args.no_progress)
    if args.export_only:
        if not trainer.load_checkpoint():
            raise SystemExit(f"no checkpoint in {cfg.output_dir}")
        summary = {"steps": trainer.step, "exported_from_checkpoint": True}
    else:
        summary = trainer.train(resume=args.resume)
    path = trainer.export(args.export)
    summary["model_dir"] = str(path)
    (path / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    logging.getLogger(__name__).info("training done: %s", summary)
    if args.eval_scenes:
        from rgpt_model.evaluation.evaluate import evaluate_synthetic, write_report

        report = evaluate_synthetic(path, split="test", num_scenes=args.eval_scenes,
                                    seed=cfg.data.seed, progress=not args.no_progress)
        report["training"] = summary
        write_report(report, path / "eval_report.json")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
