"""``python -m rgpt_model.training.train --config FILE``: train an RGPT run from a YAML config.

Writes ``<output_dir>/checkpoint-last`` (resumable with ``--resume``), ``train_log.jsonl``,
the effective ``train_config.yaml`` and, at the end, a loadable model in ``<output_dir>/final``
(or ``--export DIR``), optionally followed by an evaluation report. Aux losses and
augmentations come from the modules the config lists under ``plugins`` (imported first; e.g.
``research`` for the demo recipe's REC losses, importable from the repository root).

Several processes: ``python -m torch.distributed.run --nproc_per_node N -m
rgpt_model.training.train --config FILE --set strategy=ddp`` (or ``fsdp``; docs/TRAINING.md).
Rank 0 logs, prints and writes the shared files; a failed rank's traceback reaches torchrun's
report through ``@record`` (torch.distributed.elastic).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from torch.distributed.elastic.multiprocessing.errors import record

from rgpt_model.errors import DistributedTrainingError
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
    p.add_argument("--stop-after", type=int, default=None, metavar="STEPS",
                   help="end after this many steps, as an interruption would (the schedule "
                        "still follows the config's steps); --resume continues the run")
    p.add_argument("--export-only", action="store_true",
                   help="only export <output_dir>/checkpoint-last as a model directory")
    p.add_argument("--eval-scenes", type=int, default=0,
                   help="after training, evaluate on this many synthetic test scenes and write "
                        "eval_report.json into the exported model directory")
    p.add_argument("--eval-conditions", default="none",
                   help="conditions of that evaluation besides 'exact' (issue 20: see "
                        "rgpt_model.evaluation.conditions): 'all', 'none' or a comma list")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--log-level", default="INFO", help="logging level (ranks other than 0 log "
                   "warnings and errors only)")
    return p


def _refuse_export_over_warm_start(cfg, export: Path | None) -> None:
    """Exporting over the model a run starts from would leave its recipe without a start."""
    ws = cfg.model.warm_start
    target = export if export is not None else Path(cfg.output_dir) / "final"
    if ws is not None and target.resolve() == Path(ws.path).resolve():
        raise SystemExit(f"--export {target} is the warm-start model of this config "
                         "(model.warm_start.path); export elsewhere, or move that model and "
                         "point warm_start.path at its new place first")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=args.log_level.upper() if rank == 0 else "WARNING",
                        format=f"%(asctime)s %(levelname)s [rank {rank}] %(name)s: %(message)s")
    overrides = list(args.overrides)
    if args.output_dir is not None:
        overrides.append(f"output_dir={args.output_dir}")
    cfg = load_config(args.config, overrides)
    _refuse_export_over_warm_start(cfg, args.export)
    trainer = Trainer(cfg, progress=not args.no_progress)
    try:
        summary = _train_and_export(trainer, args)
    except DistributedTrainingError:
        trainer.close()  # every rank agreed to stop: the group can be left cleanly
        raise
    trainer.close()
    if rank != 0:
        return 0
    path = Path(summary["model_dir"])
    (path / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    logging.getLogger(__name__).info("training done: %s", summary)
    if args.eval_scenes:
        from rgpt_model.evaluation.conditions import parse_conditions
        from rgpt_model.evaluation.evaluate import evaluate_synthetic, write_report

        report = evaluate_synthetic(path, split="test", num_scenes=args.eval_scenes,
                                    seed=cfg.data.seed, progress=not args.no_progress,
                                    conditions=parse_conditions(args.eval_conditions))
        report["training"] = summary
        write_report(report, path / "eval_report.json")
    print(json.dumps(summary, indent=2))
    return 0


def _train_and_export(trainer: Trainer, args: argparse.Namespace) -> dict:
    """Train (or load the last checkpoint) and export; every rank runs it."""
    if args.export_only:
        if not trainer.load_checkpoint():
            raise SystemExit(f"no checkpoint in {trainer.cfg.output_dir}")
        summary = {"steps": trainer.step, "exported_from_checkpoint": True}
    else:
        summary = trainer.train(resume=args.resume, stop_at=args.stop_after)
    summary["model_dir"] = str(trainer.export(args.export))
    return summary


if __name__ == "__main__":
    # torchrun's @record writes a failing rank's traceback for its report (applied here only:
    # it turns the SystemExit(0) of --help into a return, which callers of main() do not want)
    raise SystemExit(record(main)())
