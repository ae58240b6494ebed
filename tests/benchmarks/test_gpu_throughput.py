"""The sampling-throughput benchmark's workload: compositions cycled to the requested count,
cut into chunks, optionally sorted by size, each chunk's atom types those of its crystals."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch
from _bench import load_benchmark


def _bench():
    return load_benchmark("gpu_throughput")


def _ref():
    # crystal i has i + 1 atoms, all of element 10 * (i + 1)
    na = torch.tensor([3, 1, 4, 2])
    z = torch.cat([torch.full((int(a),), 10 * (i + 1)) for i, a in enumerate(na)])
    return SimpleNamespace(num_atoms=na, atomic_numbers=z)


def test_chunks_cycle_the_compositions_and_keep_each_crystal_s_types():
    chunks = _bench()._sampling_chunks(_ref(), n=6, batch=4, by_size=False)
    assert [c[0].tolist() for c in chunks] == [[3, 1, 4, 2], [3, 1]]
    _na, z = chunks[1]
    assert z.tolist() == [10, 10, 10, 20]
    assert all(int(c[0].sum()) == c[1].shape[0] for c in chunks)


def test_sorted_chunks_hold_crystals_of_similar_size():
    chunks = _bench()._sampling_chunks(_ref(), n=8, batch=4, by_size=True)
    assert [c[0].tolist() for c in chunks] == [[1, 1, 2, 2], [3, 3, 4, 4]]
    assert chunks[0][1].tolist() == [20, 20, 40, 40, 40, 40]


def test_a_second_invocation_replaces_the_kept_scratch_run(tmp_path, monkeypatch):
    # on the H200 a second gpu_throughput.py call into the same --keep-run died with
    # FileExistsError (the training loop refuses to overwrite a run without --resume)
    mod = _bench()
    seen = []

    def fake_train(cfg, out, max_steps, progress, log):
        out = Path(out)
        if (out / "metrics.csv").exists():
            raise FileExistsError(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.csv").write_text("step,elapsed_s\n0,0\n10,1\n20,2\n")
        seen.append(out)
        return SimpleNamespace(step=max_steps)

    monkeypatch.setattr(mod, "train", fake_train)
    cfg = mod.TrainConfig()
    for _ in range(2):
        rows = mod.bench_training(cfg, steps=20, warmup=0, variants=["fp32"],
                                  keep=str(tmp_path / "keep"))
        assert rows[0]["steps_per_s"] == 10.0
    assert seen == [tmp_path / "keep"] * 2
