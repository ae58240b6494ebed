"""The training-step profiler: overrides reach the config, and a few tiny CPU steps give per-step
wall time and host ops (no device numbers without a GPU)."""

from __future__ import annotations

import json

from _bench import REPO, load_benchmark


def _bench():
    return load_benchmark("profile_train_step")


def test_overrides_set_nested_keys_with_yaml_values():
    raw = _bench()._override({"model": {"hidden": 32}}, ["model.size_groups=1", "compile=true",
                                                          "optim.lr=1.0e-3"])
    assert raw == {"model": {"hidden": 32, "size_groups": 1}, "compile": True,
                   "optim": {"lr": 1e-3}}


def test_a_tiny_cpu_profile_reports_per_step_wall_time_and_host_ops(tmp_path, datasets_dir):
    b = _bench()
    out = tmp_path / "p.json"
    code = b.main(["--config", str(REPO / "configs/train/tiny.yaml"), "--data",
                   str(datasets_dir / "perov_5" / "val.csv"), "--set", "batch_size=8",
                   "--set", "model.hidden=16", "--warmup", "1", "--steps", "2",
                   "--out", str(out)])
    assert code == 0
    res = json.loads(out.read_text())
    assert res["steps"] == 2 and res["batch_size"] == 8
    assert res["wall_ms_per_step"] > 0 and res["crystals_per_s"] > 0
    assert res["gpu_busy_share"] is None and res["kernels_per_step"] == 0
    names = [r["name"] for r in res["top_host_ops"]]
    assert any(n.startswith("aten::") for n in names)
