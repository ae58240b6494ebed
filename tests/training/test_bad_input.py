"""Bad training input (issue 20, items 12-13): broken, empty or mistyped YAML, a training set
with no usable crystal, and `--resume` with other data or another config, each one line
naming the file, key or difference, never a traceback."""

from __future__ import annotations

import shutil

import pytest
import torch
from _standin import TinyDenoiser, TinyDiffusion, tiny_crystals
from pydantic import ValidationError
from test_loop import _cfg

from matgen.training import (
    ConfigFileError,
    ResumeMismatchError,
    TrainConfig,
    config_error_line,
    train,
)


def _train(out, cfg=None, data=None, resume=False):
    return train(cfg or _cfg(max_steps=3), data=data if data is not None else tiny_crystals(),
                 out=out, denoiser=TinyDenoiser(conditions=("band_gap",)),
                 diffusion=TinyDiffusion(), progress=False, log=None, resume=resume)


def _load_error(tmp_path, text: str, kind: type[Exception]) -> Exception:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(kind) as e:
        TrainConfig.from_yaml(p)
    return e.value


@pytest.mark.parametrize(("text", "why"), [
    ("batch_size: [1\n", "not valid YAML at line 2, column 1"),
    ("a: b: c\n", "not valid YAML at line 1"),
    ("", "the config is empty"),
    ("# only a comment\n", "the config is empty"),
    ("- a\n- b\n", "must be a YAML mapping of keys (got a list)"),
    ("42\n", "(got a int)"),
    ("\t\x00bin", "not valid YAML"),
])
def test_a_config_file_that_is_not_a_mapping_is_one_line(tmp_path, text, why):
    msg = str(_load_error(tmp_path, text, ConfigFileError))
    assert why in msg and msg.startswith(str(tmp_path / "c.yaml")) and "\n" not in msg


def test_an_undecodable_config_file_is_one_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_bytes(b"\xff\xfe\xfa batch_size: 3")
    with pytest.raises(ConfigFileError, match="cannot read"):
        TrainConfig.from_yaml(p)


@pytest.mark.parametrize(("text", "names"), [
    ("batch_size: abc\n", ["batch_size", "(got 'abc')"]),
    ("model:\n  hiden: 3\n", ["model.hiden", "Extra inputs"]),
    ("optim:\n  lr: -1\n  betas: 3\n", ["optim.lr", "(got -1)", "optim.betas"]),
    ("data: 5\n", ["data:", "(got 5)"]),
    ("conditions:\n  properties: [band_gap, band_gap]\n", ["duplicate condition"]),
])
def test_validation_errors_name_the_key_in_one_line(tmp_path, text, names):
    line = config_error_line(_load_error(tmp_path, text, ValidationError))
    assert all(n in line for n in names), line
    assert "\n" not in line


def test_training_data_with_no_usable_crystal_is_one_line(tmp_path):
    empty = tiny_crystals()[[]]  # a batch of 0 crystals
    with pytest.raises(ValueError, match="no usable crystals"):
        _train(tmp_path / "r", data=empty)


def test_resume_with_other_data_or_config_names_the_difference(tmp_path):
    run = tmp_path / "r"
    _train(run)
    keep = tmp_path / "keep"
    shutil.copytree(run, keep)
    with pytest.raises(ResumeMismatchError) as e:
        _train(run, cfg=_cfg(max_steps=4), data=tiny_crystals(12), resume=True)
    msg = str(e.value)
    assert "data: the run trained on" in msg and "16 crystals" in msg and "12 crystals" in msg
    with pytest.raises(ResumeMismatchError, match=r"data\.max_atoms: None -> 3"):
        _train(run, cfg=_cfg(max_steps=4, data={"max_atoms": 3}), resume=True)
    with pytest.raises(ResumeMismatchError, match=r"task: 'csp' -> 'gen'"):
        _train(run, cfg=_cfg(max_steps=4, task="gen"), resume=True)
    # nothing was written by the refused calls; the same data resumes
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == sorted(
        p.name for p in (keep / "checkpoints").iterdir())
    res = _train(run, cfg=_cfg(max_steps=4), resume=True)
    assert res.step == 4 and res.resumed_from == 3


def test_a_run_from_before_a_new_config_key_still_resumes(tmp_path):
    """A key matgen added since the run was written (absent from its stored config) takes its
    default, not a difference: only what the user changed refuses the resume."""
    import json

    run = tmp_path / "r"
    _train(run)
    for meta_path in (run / "checkpoints").glob("*/model.json"):
        meta = json.loads(meta_path.read_text())
        meta["metadata"]["config"]["model"].pop("hidden")
        meta_path.unlink()  # last/ holds hard links: write a new file, not through the link
        meta_path.write_text(json.dumps(meta))
    res = _train(run, cfg=_cfg(max_steps=4), resume=True)
    assert res.step == 4


def test_train_limit_trains_on_a_seeded_subset_and_records_it(tmp_path):
    import json

    from matgen.training._setup import _training_set

    data = tiny_crystals(16)
    cfg = _cfg(max_steps=2, data={"train_limit": 5})
    res = _train(tmp_path / "r", cfg=cfg, data=data)
    meta = json.loads((tmp_path / "r" / "checkpoints" / "last" / "model.json").read_text())
    assert res.step == 2
    assert meta["metadata"]["dataset"]["num_crystals"] == 5
    assert meta["metadata"]["dataset"]["train_limit"] == 5
    assert len(meta["metadata"]["dataset"]["sha256"]) == 64  # the subset's own content hash

    class Call:
        pass

    call = Call()
    call.data = data
    a, _, _ = _training_set(cfg, call, [])
    b, _, _ = _training_set(cfg, call, [])
    c, _, _ = _training_set(_cfg(data={"train_limit": 5}, seed=4), call, [])
    assert a.keep == b.keep and len(set(a.keep)) == 5  # seeded and without repeats
    assert a.keep != c.keep  # another seed, another subset
    full, _, _ = _training_set(_cfg(data={"train_limit": 99}), call, [])
    assert len(full) == 16  # a limit above the set's size keeps all
    got = a.batch([0, 4])
    assert torch.equal(got.num_atoms, data[[a.keep[0], a.keep[4]]].num_atoms)
