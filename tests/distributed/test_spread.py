"""Placing a trial's Train workers across nodes (``sweep.placement``) and recording where the
work ran, without starting Ray (the multi-node run itself: test_multinode.py, slow)."""

from pathlib import Path

import pytest

from cjepa.distributed.extract_plan import ExtractReport
from cjepa.distributed.placement import plan_resources
from cjepa.sweeps import SweepSpec

TWO_NODES = [{"CPU": 2.0, "node_head": 1.0}, {"CPU": 2.0, "node_worker": 1.0}]


def test_placement_is_validated_by_name():
    with pytest.raises(ValueError, match=r"sweep\.placement.*ROUND"):
        SweepSpec(placement="ROUND")


def test_strict_spread_needs_a_node_per_worker():
    spec = SweepSpec(workers_per_trial=2, placement="STRICT_SPREAD")
    scaling, concurrent = plan_resources(spec, {"CPU": 4.0}, TWO_NODES)
    assert scaling.placement_strategy == "STRICT_SPREAD" and concurrent == 1
    train = scaling.ray()
    assert (train.num_workers, train.placement_strategy) == (2, "STRICT_SPREAD")
    with pytest.raises(ValueError, match=r"1 such bundle.*on different nodes"):
        plan_resources(spec, {"CPU": 4.0}, [{"CPU": 4.0}])  # 4 CPUs, but one node
    # PACK and SPREAD may share a node.
    for placement in ("PACK", "SPREAD"):
        one_node = SweepSpec(workers_per_trial=2, placement=placement)
        assert plan_resources(one_node, {"CPU": 4.0}, [{"CPU": 4.0}])[0].placement_strategy == (
            placement
        )


def test_extract_report_records_which_node_wrote_each_shard(tmp_path):
    report = ExtractReport(out=tmp_path, encoder_hash="h")
    row = {"target": str(tmp_path / "a.parquet"), "frames": 7, "seconds": 0.5, "node": "n1"}
    assert report.record(row) == 7
    assert report.record({**row, "target": str(Path("b.parquet")), "node": "n2"}) == 7
    assert report.record({"target": "c.parquet", "frames": 3, "seconds": 0.1}) == 3  # local
    assert report.shard_nodes == {"a.parquet": "n1", "b.parquet": "n2"}
    assert report.frames_extracted == 17 and set(report.shard_seconds) == {
        "a.parquet",
        "b.parquet",
        "c.parquet",
    }
