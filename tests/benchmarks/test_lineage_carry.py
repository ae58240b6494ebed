"""benchmarks/device/lineage_carry.sh: a lineage's weights committed on main under
benchmarks/lineage/NAME, carried to the device in the default's place (the files no driver reads
moved aside and put back), and what comes back staged in place of the stage it continues (in a
scratch git repository)."""

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "device" / "lineage_carry.sh"
DEFAULT = "matgen/assets/models/default/model.safetensors"
RESULT = "benchmarks/results/generative_campaign_cpu60.json"
L1 = "benchmarks/lineage/l30s"
ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@t"}

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _sh(repo: Path, *args: str, aside: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=repo, capture_output=True, text=True,
                          check=False, env={**ENV, "ASIDE": str(aside)})


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env=ENV).stdout


def _parts(dest: Path, name: str, payload: bytes) -> None:
    """``name.tar.part-aa`` / ``-ab`` as finetune_sweep.sh brings them back."""
    src = dest / "src" / name
    src.mkdir(parents=True)
    (src / "model.json").write_text('{"denoiser": {}}')
    (src / "model.safetensors").write_bytes(payload)
    with tarfile.open(dest / "w.tar", "w") as tar:
        tar.add(src, arcname=name)
    data = (dest / "w.tar").read_bytes()
    (dest / f"{name}.tar.part-aa").write_bytes(data[: len(data) // 2])
    (dest / f"{name}.tar.part-ab").write_bytes(data[len(data) // 2:])


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    files = [DEFAULT, RESULT, "README.md", f"{L1}/model.json", f"{L1}/model.safetensors",
             "benchmarks/lineage/other/model.json", "benchmarks/lineage/other/model.safetensors"]
    for f in files:
        (r / f).parent.mkdir(parents=True, exist_ok=True)
        (r / f).write_text(f"content of {f}")
    (r / ".gitignore").write_text(".whl/\n.devdata/\n")
    for d in (".whl", ".devdata/datasets"):
        (r / d).mkdir(parents=True)
    (r / ".whl" / "x.whl").write_bytes(b"w" * 100)
    _git(r, "init", "-q")
    _git(r, "add", "-A")
    _git(r, "commit", "-q", "-m", "init")
    return r


def test_prep_restore_for_a_lineage_and_for_a_plain_call(repo: Path, tmp_path: Path) -> None:
    aside = tmp_path / "aside"
    out = _sh(repo, "prep", "l30s", aside=aside)
    assert out.returncode == 0, out.stderr
    assert not (repo / DEFAULT).exists() and not (repo / RESULT).exists()
    assert not (repo / "benchmarks/lineage/other/model.safetensors").exists()
    assert (repo / L1 / "model.safetensors").exists()
    assert f"init: {L1}" in out.stdout and "limit 67108864" in out.stdout
    out = _sh(repo, "restore", aside=aside)
    assert out.returncode == 0, out.stderr
    assert _git(repo, "status", "--short") == ""

    # a plain call keeps the default and moves every lineage aside
    out = _sh(repo, "prep", aside=aside)
    assert out.returncode == 0, out.stderr
    assert (repo / DEFAULT).exists() and not (repo / L1 / "model.safetensors").exists()
    assert _sh(repo, "restore", aside=aside).returncode == 0
    assert _git(repo, "status", "--short") == ""
    assert (repo / DEFAULT).read_text() == f"content of {DEFAULT}"


def test_store_replaces_the_stage_it_continues(repo: Path, tmp_path: Path) -> None:
    aside = tmp_path / "aside"
    fetched = tmp_path / "fetched"
    fetched.mkdir()
    _parts(fetched, "l31", b"\x02" * 1000)
    out = _sh(repo, "store", "l31", str(fetched), "l30s", aside=aside)
    assert out.returncode == 0, out.stderr
    staged = _git(repo, "diff", "--cached", "--name-status").split("\n")
    assert f"D\t{L1}/model.safetensors" in staged
    assert "A\tbenchmarks/lineage/l31/model.safetensors" in staged
    assert (repo / "benchmarks/lineage/l31/model.safetensors").read_bytes() == b"\x02" * 1000
    _git(repo, "commit", "-q", "-m", "l31")
    assert _git(repo, "status", "--short") == ""


def test_errors_are_one_line_exit_2(repo: Path, tmp_path: Path) -> None:
    aside = tmp_path / "aside"
    out = _sh(repo, "prep", "nope", aside=aside)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0
    assert "benchmarks/lineage/nope" in out.stderr
    assert (repo / DEFAULT).exists() and (repo / RESULT).exists()  # nothing moved
    out = _sh(repo, "store", "l31", str(tmp_path), aside=aside)
    assert out.returncode == 2 and "l31.tar.part-" in out.stderr
    fetched = tmp_path / "fetched"
    fetched.mkdir()
    _parts(fetched, "l31", b"\x03" * 10)
    out = _sh(repo, "store", "l31", str(fetched), "gone", aside=aside)
    assert out.returncode == 2 and "benchmarks/lineage/gone" in out.stderr
    assert not (repo / "benchmarks/lineage/l31").exists()  # nothing staged
    assert _sh(repo, "bogus", aside=aside).returncode == 2
