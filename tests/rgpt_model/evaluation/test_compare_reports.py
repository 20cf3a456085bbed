"""compare_reports: two reports figure by figure, and which model is better on each."""

import json

import pytest

from rgpt_model.evaluation.compare_reports import compare, main, markdown, new_at_least_as_good


def _report(**values: float) -> dict:
    targets = {"classification_accuracy": {"value": 0.9, "target": 0.95, "met": False}}
    for name, value in values.items():
        op = "<=" if name == "classification_flat_grey" else ">="
        targets[name] = {"value": value, "ci95": [value - 0.02, value + 0.02],
                         "target": f"{op} 0.5", "met": value >= 0.5}
    return {"targets": targets}


def test_a_lower_control_is_better_and_one_worse_figure_keeps_the_old_default(tmp_path):
    old = _report(classification_exact=0.96, classification_flat_grey=0.97, rec_overall=0.7)
    new = _report(classification_exact=0.85, classification_flat_grey=0.12, rec_overall=0.7)
    rows = {r.name: r.better for r in compare(old, new)}
    assert rows == {"classification_exact": "old", "classification_flat_grey": "new",
                    "rec_overall": "same"}  # the legacy issue-4 names are left out
    assert not new_at_least_as_good(compare(old, new))
    (tmp_path / "a.json").write_text(json.dumps(old))
    (tmp_path / "b.json").write_text(json.dumps(new))
    assert main([str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 1
    assert main([str(tmp_path / "b.json"), str(tmp_path / "b.json")]) == 0


def test_a_figure_only_one_report_measured_decides_nothing():
    rows = compare(_report(classification_box=0.1), _report(classification_exact=0.9))
    assert [r.better for r in rows] == ["", ""] and new_at_least_as_good(rows)
    table = markdown(rows)
    assert "| classification_box | ≥ 0.5 | 10.0 [8.0, 12.0] | - |  |" in table


def test_a_missing_report_is_a_usage_error_that_names_it(tmp_path, capsys):


    (tmp_path / "b.json").write_text(json.dumps(_report()))
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "missing.json"), str(tmp_path / "b.json")])
    assert exc.value.code == 2 and "missing.json" in capsys.readouterr().err
