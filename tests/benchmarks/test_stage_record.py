"""benchmarks/stage_record.py: a stage's record from an extracted results.tgz (training, GPU busy,
sweep summary, loose share, familiarity) and the lineage rule's points 1 and 2 applied to it."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from tests.benchmarks._bench import load_benchmark

FORMULAS = {"train": ["NaCl", "KBr"], "val": ["NaCl", "KCl", "LiF"],
            "test": ["KBr", "NaBr", "CsI", "MgO"]}


def _data(root):
    for split, formulas in FORMULAS.items():
        lines = ["material_id,pretty_formula"] + [f"{split}-{i},{f}"
                                                 for i, f in enumerate(formulas)]
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")


def _per_structure(split, rms):
    """A per-structure table: row i matched at rms[i] (None: unmatched)."""
    lines = ["material_id,matched,rms_dist"]
    for i, r in enumerate(rms):
        lines.append(f"{split}-{i},{r is not None},{'' if r is None else r}")
    return "\n".join(lines) + "\n"


def _results(root, run="l9", val=((2, 0.1), (1, 0.2)), gen=None):
    """runs/RUN/{config.yaml,run/metrics.csv}, gpu_util.csv and sweeps/RUN.tgz as a stage call
    returns them."""
    m = root / "runs" / run / "run"
    m.mkdir(parents=True)
    (m.parent / "config.yaml").write_text("batch_size: 8\nmax_steps: 100\n")
    m.joinpath("metrics.csv").write_text(
        "step,loss,steps_per_s,val_loss\n50,1.9,10.0,\n100,1.7,12.5,2.6\n150,1.6,13.0,2.5\n")
    (root / "gpu_util.csv").write_text(  # with the GPU index column ablate.sh logs
        "timestamp, index, utilization.gpu [%], memory.used [MiB]\nt, 0, 0 %, 0 MiB\n"
        "t, 0, 80 %, 9 MiB\nt, 0, 90 %, 9 MiB\n")
    files = {}
    for seed, (matched, rmse) in enumerate(val):
        files[f"csp_val_k0.7_s{seed}.json"] = json.dumps(
            {"num_matched": matched, "num_references": 3, "rmse": rmse, "match_rate": matched / 3})
        files[f"csp_val_k0.7_s{seed}.csp_per_structure.csv"] = _per_structure(
            "val", [0.01, 0.3, None][:matched] + [None] * (3 - matched))
    for seed in range(3):
        files[f"gen_val_k0.7_s{seed}.json"] = json.dumps(
            gen or {"struct_valid": 1.0, "comp_valid": 0.9, "wdist_density": 0.1,
                    "wdist_num_elements": 0.03})
    files["csp_test_k0.7_s0.json"] = json.dumps(
        {"num_matched": 3, "num_references": 4, "rmse": 0.2, "match_rate": 0.75})
    files["csp_test_k0.7_s0.csp_per_structure.csv"] = _per_structure("test",
                                                                     [0.01, 0.25, 0.34, None])
    (root / "sweeps").mkdir()
    with tarfile.open(root / "sweeps" / f"{run}.tgz", "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{run}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _main(tmp_path, *extra):
    out = tmp_path / "record.json"
    code = load_benchmark("stage_record").main(
        [str(tmp_path / "r"), "--run", "l9", "--data-dir", str(tmp_path / "d"), "--out", str(out),
         *extra])
    assert code == 0
    return json.loads(out.read_text())


@pytest.fixture
def dirs(tmp_path):
    (tmp_path / "d").mkdir()
    _data(tmp_path / "d")
    (tmp_path / "r").mkdir()
    return tmp_path


def test_training_gpu_loose_share_and_familiarity(dirs):
    _results(dirs / "r")
    rec = _main(dirs)
    t = rec["training"]
    assert (t["steps"], t["crystals_seen"], t["steps_per_s_last"]) == (150, 1200, 13.0)
    assert t["val_loss_by_step"] == {"100": 2.6, "150": 2.5}
    assert rec["gpu"] == {"samples": 3, "active_samples": 2, "mean_busy_active": 85.0}
    assert rec["summary"]["0.7"]["val_csp_pooled"]["num_matched"] == 3
    # test: 3 matched, two above RMS 0.2
    assert rec["loose_matches_public_test"] == {"matched": 3, "loose": 2, "loose_share": 0.667}
    # val row 0 is NaCl (formula in train); row 1 KCl (K, Cl seen but not the chemical system)
    assert rec["val_pooled_matches_by_familiarity"]["formula seen"] == 2
    assert sum(rec["val_pooled_matches_by_familiarity"].values()) == 3
    assert "point1" not in rec  # no previous stage given: not judged


@pytest.mark.parametrize("prev, verdict", [
    ((2, 0.20), "gain: continue from this stage at the same peak LR"),  # RMSE -0.067
    ((3, 0.1335), "no gain, not worse"),                                 # same numbers
    ((3, 0.13), "worse: continue from the previous stage"),              # RMSE +0.0035 > 0.002
    ((14, 0.5), "worse: continue from the previous stage"),              # 11 matches fewer
])
def test_point1_verdicts(dirs, prev, verdict):
    _results(dirs / "r")  # pooled val: 3 matches, RMSE (2 x 0.1 + 0.2) / 3 = 0.1333
    rec = _main(dirs, "--previous-val", str(prev[0]), str(prev[1]))
    assert rec["point1"]["verdict"].startswith(verdict)


def test_point2_candidate_needs_csp_and_de_novo(dirs):
    _results(dirs / "r")
    easy = ["--cand-matches", "3", "--cand-rmse", "0.14"]
    assert _main(dirs, *easy)["point2"]["candidate"] is True
    assert _main(dirs, "--cand-matches", "4", "--cand-rmse", "0.14")["point2"]["candidate"] is False
    assert _main(dirs, *easy, "--cand-density", "0.05")["point2"]["candidate"] is False


def test_missing_run_is_a_one_line_error(dirs):
    _results(dirs / "r")
    with pytest.raises(SystemExit, match="missing"):
        load_benchmark("stage_record").main(
            [str(dirs / "r"), "--run", "other", "--data-dir", str(dirs / "d"), "--out",
             str(dirs / "o.json")])


def test_checkpoint_gives_the_steps_when_metrics_did_not_come_back(dirs):
    _results(dirs / "r")
    (dirs / "r" / "runs" / "l9" / "run" / "metrics.csv").unlink()
    ck = dirs / "ck"
    ck.mkdir()
    ck.joinpath("model.json").write_text(json.dumps(
        {"metadata": {"step": 40, "config": {"batch_size": 16}}}))
    t = _main(dirs, "--checkpoint", str(ck))["training"]
    assert (t["steps"], t["batch"], t["crystals_seen"]) == (40, 16, 640)
    assert "not brought back" in t["source"]
    with pytest.raises(SystemExit, match="--checkpoint reads the steps"):
        _main(dirs)
