"""Damaged checkpoints (issue 20, item 5): a truncated, empty or header-corrupted
``model.safetensors``, overwritten weight bytes, a ``model.json`` of ``{}`` or ``[1,2,3]``, a
config of another size: one line naming the file, in the API and in ``sample``, ``train --init``
and ``campaign run`` (exit 1, no traceback). The weights' sha256 is recorded at save time;
checkpoints written before that still load."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from matgen.models import (
    CheckpointError,
    DenoiserConfig,
    build_denoiser,
    load_checkpoint,
    load_pretrained_weights,
    save_checkpoint,
)

TINY = DenoiserConfig(hidden=16, vectors=4, layers=1, num_radial=8, angular_channels=4, cutoff=4.0)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def ckpt(tmp_path) -> Path:
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "ck", build_denoiser(TINY), {"step": 3})
    return tmp_path / "ck"


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _zero(p: Path) -> None:
    p.write_bytes(b"")


def _header(p: Path) -> None:
    b = bytearray(p.read_bytes())
    b[8:40] = b"{garbage" * 4
    p.write_bytes(bytes(b))


def _flip_data(p: Path) -> None:  # header intact, tensor bytes overwritten with NaN patterns
    b = bytearray(p.read_bytes())
    b[-64:] = b"\xff" * 64
    p.write_bytes(bytes(b))


@pytest.mark.parametrize("damage", [_truncate, _zero, _header, _flip_data])
def test_damaged_weights_are_one_line_naming_the_file(ckpt, damage):
    damage(ckpt / "model.safetensors")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(ckpt)
    msg = str(e.value)
    assert "\n" not in msg and str(ckpt / "model.safetensors") in msg
    with pytest.raises(CheckpointError):  # the fine-tuning path verifies too
        load_pretrained_weights(build_denoiser(TINY), ckpt)


def test_sha256_recorded_and_older_checkpoints_still_load(ckpt):
    meta = json.loads((ckpt / "model.json").read_text())
    assert len(meta["weights_sha256"]) == 64
    del meta["weights_sha256"]
    (ckpt / "model.json").write_text(json.dumps(meta))
    model, md = load_checkpoint(ckpt)  # an older checkpoint: no sha recorded
    assert md["step"] == 3 and not model.training


def test_overwritten_bytes_without_sha_are_caught_as_nan(ckpt):
    meta = json.loads((ckpt / "model.json").read_text())
    del meta["weights_sha256"]
    (ckpt / "model.json").write_text(json.dumps(meta))
    _flip_data(ckpt / "model.safetensors")
    with pytest.raises(CheckpointError, match="NaN or inf"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("text,needle", [
    ("{}", "no 'denoiser' config"),
    ("[1, 2, 3]", "found a list"),
    ("{not json", "not readable JSON"),
    ('{"denoiser": {"hidden": "big"}}', "invalid denoiser config: hidden"),
    ('{"denoiser": {}, "metadata": [1]}', "'metadata' must be a JSON object"),
])
def test_bad_model_json(ckpt, text, needle):
    (ckpt / "model.json").write_text(text)
    with pytest.raises(CheckpointError, match=needle) as e:
        load_checkpoint(ckpt)
    assert str(ckpt / "model.json") in str(e.value) and "\n" not in str(e.value)


def test_wrong_hidden_size_names_the_first_tensor(ckpt):
    meta = json.loads((ckpt / "model.json").read_text())
    meta["denoiser"]["hidden"] = 32
    (ckpt / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not fit the denoiser config") as e:
        load_checkpoint(ckpt)
    assert "the config builds" in str(e.value)


# ------------------------------------------------------------------ the commands (real exits)
def _matgen(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "matgen", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def _one_line_error(res: subprocess.CompletedProcess, path: Path) -> None:
    assert res.returncode == 1, res.stderr[-2000:]
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and str(path) in lines[0], res.stderr[-2000:]


@pytest.fixture()
def default_copy(tmp_path) -> Path:
    src = REPO / "matgen" / "assets" / "models" / "default"
    dst = tmp_path / "model"
    shutil.copytree(src, dst)
    return dst


def test_sample_and_train_init_with_damaged_checkpoints(default_copy, tmp_path):
    _truncate(default_copy / "model.safetensors")
    res = _matgen("sample", "--checkpoint", str(default_copy), "--num", "2", "--out",
                  str(tmp_path / "g.extxyz"), cwd=tmp_path)
    _one_line_error(res, default_copy / "model.safetensors")
    (default_copy / "model.json").write_text("[1, 2, 3]")
    csv = REPO.parent / "shared" / "datasets" / "perov_5" / "val.csv"
    data = csv if csv.exists() else Path(os.environ.get("MATGEN_DATA_DIR", "/nonexistent")
                                         ) / "perov_5" / "val.csv"
    if not data.exists():
        pytest.skip("perov_5 data not available")
    res = _matgen("train", "--config", str(REPO / "configs/train/tiny.yaml"), "--data",
                  str(data), "--out", str(tmp_path / "run"), "--init", str(default_copy),
                  "--max-steps", "1", "--no-progress", cwd=tmp_path)
    _one_line_error(res, default_copy / "model.json")


def test_campaign_run_with_a_damaged_model_fails_once_without_retries(default_copy, tmp_path):
    _header(default_copy / "model.safetensors")
    cfg = tmp_path / "c.yaml"
    text = (REPO / "configs/campaigns/demo.yaml").read_text()
    text = re.sub(r"^work_dir: .*$", f"work_dir: {tmp_path / 'work'}", text,
                  flags=re.MULTILINE)
    cfg.write_text(text.replace("kind: model ", f"kind: model\n  checkpoint: {default_copy}\n ")
                   .replace("train_csv:", "# train_csv:"))
    assert str(default_copy) in cfg.read_text()
    for flag in ("--prefect", "--no-prefect"):
        res = _matgen("campaign", "run", "--config", str(cfg), flag, cwd=tmp_path)
        _one_line_error(res, default_copy / "model.safetensors")
        assert "Retry" not in res.stderr + res.stdout
