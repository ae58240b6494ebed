"""Property-based fuzzing (hypothesis) of training YAML configs (issue 20): any file gives a
config, a one-line :class:`ConfigFileError` naming the file, or a validation error that
:func:`config_error_line` turns into one line naming the keys; `matgen train` on it exits 1
or 2 with one line, never a traceback."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from matgen.cli import app
from matgen.training import ConfigFileError, TrainConfig, config_error_line

FUZZ = settings(max_examples=100, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

_KEYS = ["data", "model", "diffusion", "task", "conditions", "optim", "ema_decay",
         "batch_size", "max_steps", "checkpoint_every", "keep_checkpoints", "seed", "precision",
         "distill", "dataset", "hidden", "lr", "properties", "betas", "max_atoms", "reduce",
         "nonsense", "0", ""]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(10**20), 10**20),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
values = st.recursive(scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=3), st.dictionaries(st.sampled_from(_KEYS), kids, max_size=4)),
    max_leaves=12)
configs = st.dictionaries(st.sampled_from(_KEYS), values, max_size=6)
yaml_texts = st.one_of(
    configs.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
    st.text(alphabet=st.sampled_from(list("abc:-[]{}#&*!|>'\"%@` \n\t0123456789.")),
            max_size=40),
    st.text(max_size=40))


def _check_one_line(msg: str) -> None:
    assert msg and "\n" not in msg and "Traceback" not in msg, repr(msg)


@FUZZ
@given(yaml_texts)
def test_from_yaml_is_a_config_or_one_line(text):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "c.yaml"
        p.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            TrainConfig.from_yaml(p)
        except ConfigFileError as e:
            _check_one_line(str(e))
            assert str(e).startswith(str(p))
        except ValidationError as e:
            _check_one_line(config_error_line(e))


@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(yaml_texts)
def test_train_cli_on_fuzzed_yaml_exits_1_or_2_in_one_line(text):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "c.yaml"
        p.write_text(text, encoding="utf-8", errors="surrogatepass")
        res = CliRunner().invoke(app, ["train", "--config", str(p), "--data",
                                       str(Path(d) / "missing.csv"), "--out",
                                       str(Path(d) / "run"), "--no-progress"])
    assert res.exit_code in (1, 2), res.output
    assert isinstance(res.exception, SystemExit), res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
