"""The training loop against a stand-in denoiser: schedule, EMA, checkpoints, resume, stops."""

from __future__ import annotations

import csv
import itertools
import json
import math
import shutil

import pytest
import torch
from _standin import TinyDenoiser, TinyDiffusion, tiny_crystals

from matgen.generate import latest_checkpoint
from matgen.training import (
    EMA,
    IndexStream,
    NonFiniteLossError,
    ResumeMismatchError,
    TrainConfig,
    train,
    warmup_cosine,
)
from matgen.training._checkpoint import STATE, load_training_state


def _cfg(**kw) -> TrainConfig:
    base = {
        "batch_size": 4, "max_steps": 6, "checkpoint_every": 3, "keep_checkpoints": None,
        "log_every": 1, "optim": {"lr": 1e-2, "warmup_steps": 2}, "ema_decay": 0.9, "seed": 3,
        "conditions": {"properties": ["band_gap"], "drop_prob": 0.3},
    }
    base.update(kw)
    return TrainConfig.model_validate(base)


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _run(tmp, cfg=None, **kw):
    cfg = cfg or _cfg()
    return train(cfg, data=kw.pop("data", tiny_crystals()), out=tmp,
                 denoiser=kw.pop("denoiser", TinyDenoiser(conditions=("band_gap",))),
                 diffusion=kw.pop("diffusion", TinyDiffusion()), progress=False, log=None, **kw)


def test_index_stream_is_seeded_and_spans_epochs():
    s = IndexStream(5, seed=1)
    first = s.take(0, 12)
    assert sorted(first[:5].tolist()) == list(range(5))
    assert sorted(first[5:10].tolist()) == list(range(5))
    assert torch.equal(first, IndexStream(5, seed=1).take(0, 12))
    assert torch.equal(s.take(7, 3), first[7:10])
    assert not torch.equal(first, IndexStream(5, seed=2).take(0, 12))


def test_warmup_cosine_shape():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sch = warmup_cosine(opt, warmup_steps=4, total_steps=14, min_lr_ratio=0.1)
    lrs = []
    for _ in range(16):
        lrs.append(sch.get_last_lr()[0])
        opt.step()
        sch.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4] == pytest.approx(1.0)
    assert lrs[14] == pytest.approx(0.1) and lrs[15] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(lrs[4:]))


def test_ema_tracks_weights():
    m = torch.nn.Linear(2, 2)
    ema = EMA(m, decay=0.5)
    with torch.no_grad():
        m.weight.add_(1.0)
    ema.update(m, step=10**6)  # decay 0.5
    w0 = ema.module.weight
    assert torch.allclose(w0, m.weight - 0.5)


def test_train_writes_checkpoints_metrics_and_loss_is_finite(tmp_path):
    res = _run(tmp_path / "run")
    assert res.step == 6 and res.stopped == "max_steps"
    assert all(torch.isfinite(torch.tensor(v)) for _, v in res.losses)
    ck = tmp_path / "run" / "checkpoints"
    for name in ("step_3", "step_6", "last"):
        assert (ck / name / "model.safetensors").is_file()
        assert (ck / name / "model.json").is_file()
    meta = json.loads((ck / "last" / "model.json").read_text())["metadata"]
    assert meta["step"] == 6
    assert meta["config"]["batch_size"] == 4
    assert set(meta["conditions"]) == {"band_gap"}
    assert meta["dataset_stats"]["num_atoms_hist"]
    assert len(meta["dataset"]["sha256"]) == 64
    assert "torch" in meta["versions"]
    st = torch.load(ck / "last" / STATE, weights_only=True)
    assert st["step"] == 6 and st["position"] == 24
    # model.safetensors holds the EMA weights
    from safetensors.torch import load_file

    w = load_file(str(ck / "last" / "model.safetensors"))
    for k, v in st["ema"].items():
        assert torch.equal(w[k], v)
    assert any(not torch.equal(st["ema"][k], st["model"][k]) for k in st["model"])
    rows = _rows(tmp_path / "run" / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert "coord_loss" in rows[0] and float(rows[-1]["lr"]) > 0


def test_resume_continues_exactly(tmp_path):
    full = _run(tmp_path / "a")
    # a run killed after its step-3 checkpoint: drop what came later, then resume
    run_b = tmp_path / "b"
    shutil.copytree(tmp_path / "a", run_b)
    shutil.rmtree(run_b / "checkpoints" / "step_6")
    shutil.rmtree(run_b / "checkpoints" / "last")
    assert latest_checkpoint(run_b / "checkpoints").name == "step_3"
    res = _run(run_b, resume=True)
    assert res.resumed_from == 3 and res.step == 6
    assert [s for s, _ in res.losses] == [4, 5, 6]
    assert [v for _, v in res.losses] == [v for s, v in full.losses if s > 3]
    sa = load_training_state(tmp_path / "a" / "checkpoints" / "last")
    sb = load_training_state(run_b / "checkpoints" / "last")
    for key in ("model", "ema"):
        for k in sa[key]:
            assert torch.equal(sa[key][k], sb[key][k]), (key, k)
    rows = _rows(run_b / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]


def test_fresh_run_refuses_existing_checkpoints_and_resume_checks_config(tmp_path):
    _run(tmp_path / "r", cfg=_cfg(max_steps=3))
    with pytest.raises(FileExistsError, match="--resume"):
        _run(tmp_path / "r", cfg=_cfg(max_steps=3))
    with pytest.raises(ResumeMismatchError, match="conditions"):
        _run(tmp_path / "r", cfg=_cfg(max_steps=4, conditions={"properties": []}),
             denoiser=TinyDenoiser(), resume=True)


def test_nonfinite_steps_are_skipped_and_counted(tmp_path):
    diff = TinyDiffusion(poison_calls={2, 4})
    res = _run(tmp_path / "r", diffusion=diff)
    assert res.step == 6 and res.nonfinite_steps == 2
    nan_steps = [s for s, v in res.losses if math.isnan(v)]
    assert nan_steps == [2, 4]
    st = load_training_state(tmp_path / "r" / "checkpoints" / "last")
    assert all(torch.isfinite(v).all() for v in st["model"].values())


def test_nonfinite_streak_aborts_with_clear_message(tmp_path):
    diff = TinyDiffusion(poison_calls=set(range(2, 100)))
    with pytest.raises(NonFiniteLossError, match="3 consecutive steps"):
        _run(tmp_path / "r", cfg=_cfg(max_steps=20, max_nonfinite=3), diffusion=diff)


def test_max_time_stops_with_checkpoint(tmp_path):
    res = _run(tmp_path / "r", cfg=_cfg(max_steps=10_000, checkpoint_every=10_000),
               max_time_minutes=1e-9)
    assert res.stopped == "max_time" and res.step == 1
    assert res.checkpoint is not None and res.checkpoint.name == "step_1"
    assert (tmp_path / "r" / "checkpoints" / "last" / "model.safetensors").is_file()


def test_both_tasks_alternate_and_init_loads_weights(tmp_path):
    diff = TinyDiffusion()
    _run(tmp_path / "a", cfg=_cfg(task="both", max_steps=4), diffusion=diff)
    assert diff.tasks == ["csp", "gen", "csp", "gen"]
    diff = TinyDiffusion()
    _run(tmp_path / "q", cfg=_cfg(task="both", csp_share=0.75, max_steps=8), diffusion=diff)
    assert diff.tasks == ["csp", "csp", "csp", "gen"] * 2
    # fine-tune: the same network loads every tensor and trains
    from matgen.training import load_init_weights
    from matgen.training._loop import InitMismatchError

    ckpt = tmp_path / "a" / "checkpoints" / "last"
    same = TinyDenoiser(conditions=("band_gap",))
    missing, skipped = load_init_weights(same, ckpt)
    assert missing == [] and skipped == []
    res = _run(tmp_path / "b", cfg=_cfg(max_steps=1), denoiser=same, init=ckpt)
    assert res.step == 1
    from matgen.generate import read_metadata, weights_id

    lineage = read_metadata(tmp_path / "b" / "checkpoints" / "last")["init"]  # the parent is named
    assert lineage == {"path": str(ckpt), "checkpoint_id": weights_id(ckpt), "step": 4}
    assert read_metadata(ckpt)["init"] is None
    # a tensor outside the condition embeddings (`cond.`) that changed shape (this stand-in
    # feeds conditions into `inp`) is a usage error, not a silent fresh start
    with pytest.raises(InitMismatchError, match=r"inp\.weight"):
        _run(tmp_path / "c", cfg=_cfg(max_steps=1), denoiser=TinyDenoiser(),
             init=ckpt)
    fresh = TinyDenoiser(hidden=16, conditions=("band_gap", "e_above_hull"))
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(InitMismatchError, match="does not fit"):
        load_init_weights(fresh, ckpt)
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())  # untouched


def test_objectives_share_one_loss_protocol():
    """Plain diffusion and consistency distillation take the same call the loop makes."""
    import inspect

    from matgen.diffusion import ConsistencyDistillation, CrystalDiffusion

    for cls in (CrystalDiffusion, ConsistencyDistillation, TinyDiffusion):
        names = list(inspect.signature(cls.loss).parameters)
        assert names[3:5] == ["cond", "task"], cls


class _Recording(TinyDiffusion):
    def __init__(self) -> None:
        super().__init__()
        self.conds: list = []

    def loss(self, model, batch, cond=None, task="csp"):
        self.conds.append(cond)
        return super().loss(model, batch, cond=cond, task=task)


def test_the_loop_passes_conditions_whole_to_the_objective(tmp_path):
    """Dropping conditions for guidance is the objective's job (drop_prob 0.3 in _cfg)."""
    diff = _Recording()
    _run(tmp_path / "r", diffusion=diff)
    assert len(diff.conds) == 6
    assert all(not torch.isnan(c["band_gap"]).any() for c in diff.conds)


def test_drop_all_prob_hands_the_objective_unconditioned_crystals(tmp_path):
    """conditions.drop_all_prob trains the all-NaN input that unconditioned sampling gives."""
    seen = {}
    for p in (1.0, 0.5):
        diff = _Recording()
        _run(tmp_path / f"r{p}", cfg=_cfg(conditions={"properties": ["band_gap"],
                                                       "drop_prob": 0.3, "drop_all_prob": p}),
             diffusion=diff)
        seen[p] = torch.cat([torch.isnan(c["band_gap"]) for c in diff.conds])
    assert bool(seen[1.0].all())
    assert 0 < int(seen[0.5].sum()) < len(seen[0.5])


def test_compile_fallback_is_scoped_not_process_wide():
    from torch import _dynamo

    from matgen.training._setup import compile_fallback

    before = _dynamo.config.suppress_errors
    with compile_fallback(_cfg(compile=True)):
        assert _dynamo.config.suppress_errors
    assert _dynamo.config.suppress_errors == before


def test_tensor_logs_reach_the_metrics_through_the_step_s_one_reduction(tmp_path):
    """The diffusion objectives log 0-dim tensors (a float() per log would stall a GPU step
    between forward and backward); the loop reads them with its per-step reduction, so the
    metrics rows hold the same numbers as float logs would."""

    class TensorLogs(TinyDiffusion):
        def loss(self, model, batch, cond=None, task="csp"):
            loss, _ = super().loss(model, batch, cond=cond, task=task)
            return loss, {"coord_loss": loss.detach(), "twice": 2.0 * loss.detach()}

    res = _run(tmp_path / "run", diffusion=TensorLogs())
    rows = _rows(tmp_path / "run" / "metrics.csv")
    assert len(rows) == 6
    for (_, v), r in zip(res.losses, rows, strict=True):
        assert float(r["coord_loss"]) == pytest.approx(v, rel=1e-5)  # written to 6 digits
        assert float(r["twice"]) == pytest.approx(2 * v, rel=1e-5)


def test_the_optimizer_is_fused_only_on_a_gpu():
    from matgen.training._components import build_optimizer

    opt, _ = build_optimizer(_cfg(), torch.nn.Linear(3, 2), total_steps=10)
    assert not opt.defaults.get("fused")
    if torch.cuda.is_available():
        opt, _ = build_optimizer(_cfg(), torch.nn.Linear(3, 2).cuda(), total_steps=10)
        assert opt.defaults["fused"]
