"""The parameter table and its runtime-change policy (no node needed)."""

from __future__ import annotations

import pytest
from rclpy.parameter import Parameter

from rgpt_model.device import DEVICE_HELP
from rgpt_ros.parameters import PARAMS, SPECS, change_policy, descriptor, parse_vocabulary


def _p(name, value):
    return Parameter(name, value=value)


def test_change_policy():
    assert change_policy([_p("max_regions", 4)], "active").successful
    r = change_policy([_p("model_path", "/x")], "inactive")
    assert not r.successful and "cleanup" in r.reason
    assert change_policy([_p("model_path", "/x")], "unconfigured").successful
    r = change_policy([_p("input_depth", 2)], "active")
    assert not r.successful and "deactivate" in r.reason
    assert change_policy([_p("input_depth", 2)], "inactive").successful
    assert not change_policy([_p("tasks", ["none", "caption"])], "active").successful
    assert not change_policy([_p("device", "tpu")], "unconfigured").successful
    assert change_policy([_p("device", "cuda:1")], "unconfigured").successful
    assert not change_policy([_p("autostart", False)], "unconfigured").successful


def test_an_active_node_is_told_to_deactivate_before_cleanup():
    r = change_policy([_p("model_path", "/x")], "active")
    assert not r.successful
    assert r.reason.index("deactivate") < r.reason.index("cleanup"), r.reason


@pytest.mark.parametrize("state", ["unconfigured", "inactive", "active"])
def test_setting_the_current_value_succeeds_in_every_state(state):
    """Loading the node's own parameter dump must not fail (it set 15 parameters before)."""
    current = {spec.name: spec.default for spec in PARAMS}
    params = [_p(name, value) for name, value in current.items()]
    assert change_policy(params, state, current.get).successful
    assert not change_policy([_p("autostart", False)], state, current.get).successful
    assert not descriptor(SPECS["autostart"]).read_only  # rclpy refuses even a no-op then


def test_descriptions_agree_with_the_accepted_values():
    for spec in PARAMS:
        assert spec.description and spec.policy in ("live", "inactive", "unconfigured",
                                                     "startup")
        for choice in spec.choices or ():
            assert choice in spec.description, (spec.name, choice)
    assert DEVICE_HELP in SPECS["device"].description
    assert change_policy([_p("device", "cuda:3")], "unconfigured").successful
    assert "refer" in SPECS["max_pending_queries"].description


def test_parse_vocabulary():
    assert parse_vocabulary(" cup, mug ,,plate ") == ["cup", "mug", "plate"]
    assert parse_vocabulary("") is None
