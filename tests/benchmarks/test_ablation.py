"""The ablation harness: config merging, sampler specs, throughput from metrics, and (slow) a
whole round of two tiny variants on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from _bench import REPO, load_benchmark


def _harness():
    return load_benchmark("ablation")


def test_merged_config_applies_dotted_overrides_without_touching_the_base():
    h = _harness()
    base = {"model": {"hidden": 32, "layers": 2}, "task": "both"}
    out = h.merged_config(base, {"model.hidden": 512, "diffusion.objective": "flow", "task": "csp"})
    assert out == {"model": {"hidden": 512, "layers": 2}, "task": "csp",
                   "diffusion": {"objective": "flow"}}
    assert base["model"]["hidden"] == 32
    whole = h.merged_config(base, {"model": {"hidden": 8}})
    assert whole["model"] == {"hidden": 8}


def test_sampler_specs_and_steps_per_second():
    h = _harness()
    assert h.sampler_spec("pc") == (["--sampler", "pc"], "pc")
    assert h.sampler_spec("fast:50") == (["--sampler", "fast", "--steps", "50"], "fast50")
    assert h.sampler_spec("fast:50:5") == (
        ["--sampler", "fast", "--steps", "50", "--flow-slope", "5"], "fast50s5")
    rows = [{"step": "10", "elapsed_s": "5"}, {"step": "20", "elapsed_s": "6"},
            {"step": "40", "elapsed_s": "8"}]
    assert h.steps_per_s(rows) == pytest.approx(10.0)  # the first row (start-up) is skipped
    assert h.steps_per_s(rows[:2]) is None


def test_a_variant_with_init_starts_from_that_checkpoint(tmp_path, monkeypatch):
    """``init: DIR`` in a variant becomes ``matgen train --init DIR`` (round 4 continues the
    shipped default); variants without it start from scratch."""
    h = _harness()
    launched = {}

    class _Done:
        def wait(self, timeout=None):
            return 0

    def fake_launch(cmd, gpu, log, threads=2, nproc=1):
        launched[Path(log).parent.name] = cmd
        return _Done()

    monkeypatch.setattr(h, "_launch", fake_launch)
    variants = {"cont": {"init": "matgen/assets/models/default"}, "scratch": {}}
    codes = h.train_all(variants, tmp_path, None, 1.0, {"cont": 5, "scratch": 5}, "cpu", "run")
    assert codes == {"cont": 0, "scratch": 0}
    cmd = launched["cont"]
    assert cmd[cmd.index("--init") + 1] == "matgen/assets/models/default"
    assert "--init" not in launched["scratch"]


def test_a_variant_with_nproc_trains_with_ddp_over_that_many_gpus(tmp_path, monkeypatch):
    """``nproc: 2`` launches ``matgen train`` under torch.distributed.run with two GPUs visible
    from the variant's ``gpu`` on (a lineage on a 2-GPU machine); others stay one process."""
    h = _harness()
    envs, cmds = {}, {}

    class _Proc:
        def wait(self, timeout=None):
            return 0

    def fake_popen(cmd, env, stdout, stderr):
        name = Path(stdout.name).parent.name
        envs[name], cmds[name] = env, cmd
        return _Proc()

    monkeypatch.setattr(h.subprocess, "Popen", fake_popen)
    monkeypatch.setattr(h, "_gpu_count", lambda: 2)
    variants = {"ddp": {"gpu": 1, "nproc": 2}, "one": {"gpu": 1}}
    for name in variants:
        (tmp_path / name).mkdir()
    assert h.train_all(variants, tmp_path, None, 1.0, {"ddp": 5, "one": 5}, "cuda", "run") == {
        "ddp": 0, "one": 0}
    assert cmds["ddp"][1:6] == ["-m", "torch.distributed.run", "--standalone",
                                "--nproc_per_node=2", "-m"]
    assert cmds["ddp"][6:8] == ["matgen", "train"] and cmds["one"][1:4] == ["-m", "matgen", "train"]
    assert envs["ddp"]["CUDA_VISIBLE_DEVICES"] == "1,0" and envs["one"]["CUDA_VISIBLE_DEVICES"] == "1"


def test_an_init_without_a_checkpoint_is_a_usage_error_before_training(tmp_path, monkeypatch,
                                                                      capsys):
    h = _harness()
    monkeypatch.setattr(h, "train_all", lambda *a, **k: pytest.fail("trained"))
    spec = tmp_path / "set.yaml"
    spec.write_text(yaml.safe_dump({"base": str(REPO / "configs/train/mp20_dense.yaml"),
                                    "minutes": 1, "variants": {
                                        "gone": {"init": str(tmp_path / "runs/lost")}}}))
    code = h.main(["--set", str(spec), "--work", str(tmp_path / "w"), "--out",
                   str(tmp_path / "o.json"), "--stage", "train"])
    err = capsys.readouterr().err
    assert code == 2 and "variant gone" in err and "runs/lost" in err and err.count("\n") == 1
    args = ["--set", str(spec), "--work", str(tmp_path / "w"), "--out", str(tmp_path / "o.json"),
            "--stage", "check"]
    assert h.main(args) == 2  # the pre-flight on the CPU says the same
    (tmp_path / "runs/lost").mkdir(parents=True)
    (tmp_path / "runs/lost/model.safetensors").write_bytes(b"")
    assert h.main(args) == 0 and "gone ready" in capsys.readouterr().out
    assert not (tmp_path / "w").exists()  # a check writes nothing


def test_gpu_share_counts_a_ddp_variant_on_every_gpu_it_uses(monkeypatch):
    """A DDP variant over GPUs 0 and 1 shares GPU 1 with a one-GPU run there: both get half."""
    h = _harness()
    monkeypatch.setattr(h, "_gpu_count", lambda: 2)
    variants = {"ddp": {"gpu": 0, "nproc": 2}, "one": {"gpu": 1}, "alone": {"gpu": 0}}
    assert h._gpu_share(variants["one"], variants) == 0.5
    assert h._gpu_share(variants["ddp"], variants) == 0.5
    assert h._gpu_share({"gpu": 1}, {"x": {"gpu": 1}}) == 1.0
    monkeypatch.setattr(h, "_gpu_count", lambda: 1)  # on one GPU everything lands on GPU 0
    assert h._gpu_share(variants["alone"], variants) == 1 / 3


def test_a_bad_nproc_is_a_usage_error(tmp_path, monkeypatch, capsys):
    h = _harness()
    monkeypatch.setattr(h, "train_all", lambda *a: pytest.fail("nothing may train"))
    spec = tmp_path / "set.yaml"
    spec.write_text(yaml.safe_dump({"base": str(_tiny_set(tmp_path).parent / "base.yaml"),
                                    "minutes": 1, "variants": {"a": {"nproc": 0}}}))
    code = h.main(["--set", str(spec), "--work", str(tmp_path / "w"), "--out",
                   str(tmp_path / "o.json"), "--stage", "train"])
    assert code == 2
    err = capsys.readouterr().err
    assert "variant a" in err and "nproc" in err and err.count("\n") == 1


@pytest.mark.slow
def test_a_tiny_round_trains_probes_and_scores_both_variants(tmp_path, datasets_dir):
    h = _harness()
    out = tmp_path / "res.json"
    perov = datasets_dir / "perov_5"
    code = h.main(["--set", str(REPO / "benchmarks/ablations/tiny_cpu.yaml"),
                   "--work", str(tmp_path / "w"), "--out", str(out),
                   "--data", str(perov / "val.csv"), "--reference", str(perov / "test.csv"),
                   "--eval-rows", "6", "--samplers", "pc:10,fast:5", "--probe-s", "8",
                   "--device", "cpu", "--eval-workers", "1", "--sample-timeout", "300"])
    assert code == 0
    res = json.loads(out.read_text())
    assert [r["name"] for r in res["runs"]] == ["radius", "dense", "flow"]
    for r in res["runs"]:
        assert r["steps"] > 0 and r["probe_steps_per_s"] > 0
        tags = ("csp_fast5", "csp_fast5s3") if r["name"] == "flow" else ("csp_pc10", "csp_fast5")
        for tag in tags:
            assert r[tag]["num_references"] == 6 and r[tag]["num_generated_evaluated"] == 6
            assert 0.0 <= r[tag]["match_rate"] <= 1.0


def test_best_sampler_picks_the_highest_validation_match_rate():
    h = _harness()
    res = {"runs": [{"name": "a", "samplers": ["fast:50", "fast:50:5", "pc"],
                     "csp_fast50": {"match_rate": 0.2}, "csp_fast50s5": {"match_rate": 0.3},
                     "csp_pc": {}}]}
    assert h.best_sampler(res, "a") == "fast:50:5"
    assert h.best_sampler(res, "missing") is None


def test_runs_get_a_time_driven_schedule_unless_a_probe_plans_steps(tmp_path, datasets_dir):
    """The configs a round writes: optim.schedule time by default (the budget ends the cosine),
    the base schedule when --probe-s plans step counts."""
    h = _harness()
    ref = datasets_dir / "perov_5" / "test.csv"
    for probe, want in (("0", "time"), ("5", "steps")):
        work = tmp_path / f"w{probe}"
        h.main(["--set", str(REPO / "benchmarks/ablations/tiny_cpu.yaml"), "--work", str(work),
                "--out", str(tmp_path / f"r{probe}.json"), "--stage", "eval", "--probe-s", probe,
                "--reference", str(ref), "--eval-rows", "2", "--device", "cpu"])
        for name in ("radius", "dense", "flow"):
            cfg = yaml.safe_load((work / name / "config.yaml").read_text())
            assert cfg.get("optim", {}).get("schedule", "steps") == want, (probe, name)


def test_pooled_validation_weights_each_seed_by_its_references_and_matches():
    """Round 7 selects on two sampling seeds pooled: match over all references, RMSE over all
    matched structures."""
    h = _harness()
    out = h.pooled([{"match_rate": 0.4, "rmse": 0.10, "num_references": 1000},
                    {"match_rate": 0.2, "rmse": 0.20, "num_references": 1000}, {}])
    assert out["match_rate"] == pytest.approx(0.3) and out["seeds"] == 2
    assert out["rmse"] == pytest.approx((0.10 * 400 + 0.20 * 200) / 600)
    assert h.pooled([{}]) == {}
    res = {"runs": [{"name": "a", "samplers": ["fast:50", "pc"],
                     "csp_fast50": {"match_rate": 0.5}, "csp_fast50_pooled": {"match_rate": 0.2},
                     "csp_pc": {"match_rate": 0.3}}]}
    assert h.best_sampler(res, "a") == "pc"  # the pooled 0.2, not seed 0's 0.5, counts


def _tiny_set(tmp_path: Path) -> Path:
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"model": {"hidden": 8}}))
    spec = tmp_path / "set.yaml"
    spec.write_text(yaml.safe_dump({"base": str(base), "minutes": 1,
                                    "variants": {"a": {}, "b": {"overrides": {"model.hidden": 4}}}}))
    return spec


def test_only_trains_the_named_variants_and_a_failed_run_fails_the_train_stage(tmp_path,
                                                                             monkeypatch):
    """Round 25's first call (2026-12-06) trained all three variants of its set on one GPU
    though one was asked for: ``--only`` is what the sweep driver passes; and a train stage whose
    runs died reported exit 0."""
    h = _harness()
    trained = []

    def fake_train_all(variants, work, data, minutes, steps, device, suffix):
        trained.append(sorted(variants))
        return {k: (1 if k == "b" else 0) for k in variants}

    monkeypatch.setattr(h, "train_all", fake_train_all)
    spec = _tiny_set(tmp_path)
    common = ["--set", str(spec), "--out", str(tmp_path / "o.json"), "--stage", "train"]
    assert h.main([*common, "--work", str(tmp_path / "w1"), "--only", "a"]) == 0
    assert trained == [["a"]]
    assert not (tmp_path / "w1" / "b").exists()
    assert h.main([*common, "--work", str(tmp_path / "w2"), "--only", "a,b"]) == 1


def test_only_with_an_unknown_variant_is_a_usage_error(tmp_path, monkeypatch, capsys):
    h = _harness()
    monkeypatch.setattr(h, "train_all", lambda *a: pytest.fail("nothing may train"))
    spec = _tiny_set(tmp_path)
    code = h.main(["--set", str(spec), "--work", str(tmp_path / "w"), "--out",
                   str(tmp_path / "o.json"), "--stage", "train", "--only", "a,zz"])
    assert code == 2
    assert "zz" in capsys.readouterr().err
