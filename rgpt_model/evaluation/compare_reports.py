"""Two evaluation reports side by side, target by target (issue 20), to see what a new model
gains and loses against the one it replaces.

    python -m rgpt_model.evaluation.compare_reports \\
        rgpt_model/demo_model_v1/eval_conditions.json rgpt_model/demo_model/eval_report.json

prints a markdown table (value and 95 % interval of each, which is better) and the verdict;
exits 0 when the second report is at least as good on every shared figure, else 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Row:
    """One target figure of both reports; ``better`` is "old", "new", "same" or "" (not both
    measured)."""

    name: str
    target: str
    old: dict | None
    new: dict | None
    better: str


def _value(fig: dict | None) -> float | None:
    return None if fig is None else fig.get("value")


def compare(old: dict, new: dict) -> list[Row]:
    """Rows for every issue-20 target either report checked (``report["targets"]``, written
    by rgpt_model.evaluation.targets.check_targets); the legacy issue-4 names are skipped."""
    old_t, new_t = old.get("targets") or {}, new.get("targets") or {}
    rows = []
    for name in dict.fromkeys([*old_t, *new_t]):  # both reports' names, in order, once
        a, b = old_t.get(name), new_t.get(name)
        if not (isinstance(a or b, dict) and "ci95" in (a or b)):
            continue  # a legacy figure (no interval) or not a figure at all
        target = (a or b)["target"]
        va, vb = _value(a), _value(b)
        if va is None or vb is None:
            better = ""
        elif va == vb:
            better = "same"
        else:
            lower_wins = target.startswith("<=")
            better = "new" if (vb < va) == lower_wins else "old"
        rows.append(Row(name, target, a, b, better))
    return rows


def _cell(fig: dict | None) -> str:
    if _value(fig) is None:
        return "-"
    lo, hi = fig.get("ci95") or (None, None)
    interval = f" [{100 * lo:.1f}, {100 * hi:.1f}]" if lo is not None else ""
    mark = " ✓" if fig.get("met") else ""
    return f"{100 * fig['value']:.1f}{interval}{mark}"


def markdown(rows: Sequence[Row], old_name: str = "old", new_name: str = "new") -> str:
    """The table: figure, target, each report's value (%) with its 95 % interval (✓ = target
    met), and which is better."""
    lines = [f"| figure | target | {old_name} | {new_name} | better |", "|---|---|---|---|---|"]
    for r in rows:
        target = r.target.replace(">= ", "≥ ").replace("<= ", "≤ ")
        lines.append(f"| {r.name} | {target} | {_cell(r.old)} | {_cell(r.new)} | {r.better} |")
    return "\n".join(lines)


def new_at_least_as_good(rows: Sequence[Row]) -> bool:
    """No shared figure where the old is better (the exit status says so)."""
    return not any(r.better == "old" for r in rows)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old", type=Path, help="the current model's report (eval_report.json)")
    p.add_argument("new", type=Path, help="the candidate model's report")
    args = p.parse_args(argv)
    reports = []
    for path in (args.old, args.new):
        try:
            reports.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            p.error(f"cannot read the report {path}: {exc}")
    rows = compare(*reports)
    print(markdown(rows, args.old.parent.name or "old", args.new.parent.name or "new"))
    ok = new_at_least_as_good(rows)
    worse = [r.name for r in rows if r.better == "old"]
    print("\nnew is at least as good on every figure both measured" if ok
          else f"\nold is better on {len(worse)} figure(s): {', '.join(worse)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
