"""The intra-op thread count a server process sets for torch."""

from __future__ import annotations

import torch

from rgpt_model.threads import available_cpus, default_num_threads, set_num_threads


def test_default_leaves_a_core_free():
    assert default_num_threads() == max(1, available_cpus() - 1)


def test_set_num_threads_sets_and_reports_the_count(caplog):
    before = torch.get_num_threads()
    try:
        with caplog.at_level("INFO", logger="rgpt_model.threads"):
            assert set_num_threads(2) == 2 == torch.get_num_threads()
        assert "intra-op threads: 2" in caplog.text
        assert set_num_threads(0) == default_num_threads() == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
