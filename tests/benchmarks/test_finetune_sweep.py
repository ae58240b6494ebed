"""benchmarks/device/finetune_sweep.sh, a watching call: what it brings back when it ends before
the job is done (a snapshot of each run's newest checkpoint, or the driver's final export) and
when the job is done (the results, weights only as FETCH names them). The detached driver is not
started: a scratch job folder with driver.log makes the call a follow-up that only watches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from matgen.models import DenoiserConfig, build_denoiser, save_checkpoint
from tests.benchmarks._bench import REPO, TINY

SCRIPT = REPO / "benchmarks" / "device" / "finetune_sweep.sh"


def _job(tmp: Path, *runs_steps: tuple[str, int]) -> Path:
    """A job folder as the driver leaves it mid-training: driver.log, each run's step checkpoint,
    and the job's copy of the tree ($W.src, here a link to this checkout)."""
    w = tmp / "ft"
    (w / "export").mkdir(parents=True)
    (w / "driver.log").write_text("[00:00:00] start\n")
    (tmp / "ft.src").symlink_to(REPO)
    for run, step in runs_steps:
        ck = w / "runs" / run / "run" / "checkpoints" / f"step_{step}"
        save_checkpoint(ck, build_denoiser(DenoiserConfig(**TINY)), {"step": step})
        (ck / "training_state.pt").write_bytes(b"optimizer state")
    return w


def _call(w: Path, out: Path, runs: str, **env: str) -> subprocess.CompletedProcess:
    out.mkdir(exist_ok=True)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(
        ["bash", str(SCRIPT)], cwd=REPO, capture_output=True, text=True, check=False,
        env={**os.environ, "PATH": path, "SET": "x.yaml", "RUNS": runs, "W": str(w),
             "OUT": str(out), "DEADLINE": "0", **env})


def _unpack(out: Path, run: str, dest: Path) -> dict:
    parts = sorted(out.glob(f"{run}.tar.part-*"))
    assert parts, f"no {run} parts in {sorted(p.name for p in out.iterdir())}"
    (dest / "w.tar").write_bytes(b"".join(p.read_bytes() for p in parts))
    with tarfile.open(dest / "w.tar") as tar:
        tar.extractall(dest, filter="data")
    raw = json.loads((dest / run / "model.json").read_text())
    assert (dest / run / "model.safetensors").is_file()
    return raw


def test_a_call_that_ends_mid_training_brings_back_each_runs_newest_checkpoint(tmp_path):
    w = _job(tmp_path, ("a", 40), ("b", 60))
    ck_b = w / "runs" / "b" / "run" / "checkpoints"
    save_checkpoint(ck_b / "step_20", build_denoiser(DenoiserConfig(**TINY)), {"step": 20})
    (ck_b / "step_20" / "training_state.pt").write_bytes(b"older")
    res = _call(w, tmp_path / "out", "a b")
    assert res.returncode == 0, res.stderr
    for run, step in (("a", 40), ("b", 60)):
        raw = _unpack(tmp_path / "out", run, tmp_path)
        assert raw["metadata"]["step"] == step and raw["storage_dtype"] == "float16"
    assert not (tmp_path / "out" / "results.tgz").exists()
    assert not list((w / "export").glob("*.tar.part-*"))  # snapshots stay apart from the export


def test_a_run_without_a_checkpoint_yet_is_skipped_and_the_others_still_come_back(tmp_path):
    w = _job(tmp_path, ("a", 40))
    res = _call(w, tmp_path / "out", "a fresh")
    assert res.returncode == 0, res.stderr
    assert "no complete checkpoint yet" in res.stderr + res.stdout
    assert _unpack(tmp_path / "out", "a", tmp_path)["metadata"]["step"] == 40
    assert not list((tmp_path / "out").glob("fresh.tar.part-*"))


def test_once_the_driver_exported_the_final_weights_come_back_not_a_snapshot(tmp_path):
    w = _job(tmp_path, ("a", 40))
    (w / "export" / "a.tar.part-aa").write_bytes(b"final")
    (w / "EXPORTED").touch()
    res = _call(w, tmp_path / "out", "a")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out" / "a.tar.part-aa").read_bytes() == b"final"
    assert not (w / "snap").exists()


def test_a_finished_job_brings_back_its_results_and_only_the_fetched_weights(tmp_path):
    w = _job(tmp_path, ("a", 40), ("b", 60))
    for name, data in (("results.tgz", b"r"), ("a.tar.part-aa", b"A"), ("b.tar.part-aa", b"B")):
        (w / "export" / name).write_bytes(data)
    (w / "EXPORTED").touch()
    (w / "ALL_DONE").touch()
    res = _call(w, tmp_path / "out", "a b", FETCH="b")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.tar.part-aa", "results.tgz"]


def test_no_snapshot_turns_the_mid_training_copy_off(tmp_path):
    w = _job(tmp_path, ("a", 40))
    res = _call(w, tmp_path / "out", "a", NO_SNAPSHOT="1")
    assert res.returncode == 0, res.stderr
    assert not list((tmp_path / "out").iterdir()) and not (w / "snap").exists()
