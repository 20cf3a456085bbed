"""The REC attention probe finds a superlative's group and measures the ranking it sees."""

from __future__ import annotations

from research.rec_attention_probe import attribute_group, probe
from rgpt_model.build import load_predictor
from rgpt_model.data.scene import Region
from rgpt_model.demo import DEMO_MODEL_V1_DIR


def _region(i: int, shape: str, colour: str, size: str) -> Region:
    return Region(id=i, shape=shape, colour=colour, size=size, bbox=(0, 0, 1, 1), area=1,
                  full_area=1, centroid=(0.0, 0.0), z=i)


def test_attribute_group_keeps_regions_with_every_named_attribute():
    regions = [_region(1, "square", "red", "small"), _region(2, "square", "blue", "large"),
               _region(3, "circle", "red", "large")]
    assert attribute_group("the leftmost square", regions) == [0, 1]
    assert attribute_group("the topmost red object", regions) == [0, 2]
    assert attribute_group("the largest large red object", regions) == [2]
    assert attribute_group("the rightmost object", regions) == [0, 1, 2]


def test_probe_sees_the_demo_model_rank_by_size():
    report = probe(load_predictor(DEMO_MODEL_V1_DIR, device="cpu"), num_scenes=4, progress=False)
    assert set(report) <= {"leftmost", "rightmost", "topmost", "bottommost", "largest",
                           "smallest"}
    for stats in report.values():
        assert 0.0 <= stats["group_mass"] <= 1.0 and stats["num"] > 0
        assert stats["target_mass"] <= stats["group_mass"] + 1e-6
    # the demo model answers "largest" at ~94 %: its head ranks the group by area
    assert report["largest"]["rank_correlation"] > 0.5
