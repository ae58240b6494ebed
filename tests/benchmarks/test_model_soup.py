"""benchmarks/model_soup.py: the element-wise mean of checkpoints, metadata from the first."""

from __future__ import annotations

import json

import torch

from matgen.models import DenoiserConfig, build_denoiser, load_checkpoint, save_checkpoint
from tests.benchmarks._bench import TINY, load_benchmark


def _saved(path, seed, meta, **cfg):
    torch.manual_seed(seed)
    model = build_denoiser(DenoiserConfig(**{**TINY, **cfg}))
    save_checkpoint(path, model, meta, storage_dtype=torch.float16)
    return load_checkpoint(path)[0].state_dict()


def test_the_soup_is_the_mean_of_its_members_with_the_first_ones_metadata(tmp_path):
    soup = load_benchmark("model_soup")
    a = _saved(tmp_path / "a", 0, {"step": 5, "diffusion_note": "first"})
    b = _saved(tmp_path / "b", 1, {"step": 9}, dropout=0.2)  # dropout may differ
    c = _saved(tmp_path / "c", 2, {"step": 11})
    assert soup.main([str(tmp_path / n) for n in "abc"] + ["--out", str(tmp_path / "s")]) == 0
    got = load_checkpoint(tmp_path / "s")[0].state_dict()
    moved = 0
    for k, v in got.items():
        if v.is_floating_point():
            want = ((a[k].float() + b[k].float() + c[k].float()) / 3).half().float()
            assert torch.allclose(v.float(), want, atol=1e-3), k
            moved += int(not torch.equal(v, a[k]))
    assert moved > 0  # not the first member's weights
    raw = json.loads((tmp_path / "s" / "model.json").read_text())
    assert raw["storage_dtype"] == "float16"
    md = raw["metadata"]
    assert md["diffusion_note"] == "first" and md["init"]["step"] == 5
    assert [m["path"] for m in md["soup"]["members"]] == [str(tmp_path / n) for n in "abc"]


def test_members_of_different_architectures_are_refused_with_one_line(tmp_path, capsys):
    soup = load_benchmark("model_soup")
    _saved(tmp_path / "a", 0, {})
    _saved(tmp_path / "b", 1, {}, hidden=32)
    assert soup.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err.strip()
    assert "different denoisers" in err and "\n" not in err
    assert not (tmp_path / "s").exists()
