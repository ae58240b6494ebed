"""benchmarks/device/lineage_carry.sh: a lineage's weights kept on a git branch, carried to the
device in the default's place, and what comes back stored again (in a scratch git repository)."""

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "device" / "lineage_carry.sh"
MOVED = ["matgen/assets/models/default/model.safetensors",
         "benchmarks/results/generative_campaign_cpu60.json", "docs/lab_report.png"]
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
    for f in MOVED + ["README.md"]:
        (r / f).parent.mkdir(parents=True, exist_ok=True)
        (r / f).write_text(f"content of {f}")
    (r / ".gitignore").write_text("runs/\n.whl/\n.devdata/\n")
    for d in (".whl", ".devdata/datasets"):
        (r / d).mkdir(parents=True)
    (r / ".whl" / "x.whl").write_bytes(b"w" * 100)
    _git(r, "init", "-q")
    _git(r, "add", "-A")
    _git(r, "commit", "-q", "-m", "init")
    return r


def test_store_prep_restore_round_trip(repo: Path, tmp_path: Path) -> None:
    aside = tmp_path / "aside"
    fetched = tmp_path / "fetched"
    fetched.mkdir()
    _parts(fetched, "l30", b"\x01" * 1000)
    out = _sh(repo, "store", "l30", str(fetched), aside=aside)
    assert out.returncode == 0, out.stderr
    assert _git(repo, "ls-tree", "-r", "--name-only", "weights/l30").split() == [
        "l30/model.json", "l30/model.safetensors"]
    assert _git(repo, "status", "--short") == ""  # main's tree and index untouched
    first = _git(repo, "rev-parse", "weights/l30").strip()

    # a later checkout without the folder gets it back from the branch; the files leave the tree
    shutil.rmtree(repo / "runs")
    out = _sh(repo, "prep", "l30", aside=aside)
    assert out.returncode == 0, out.stderr
    assert (repo / "runs/device/l30/model.safetensors").read_bytes() == b"\x01" * 1000
    assert all(not (repo / f).exists() for f in MOVED)
    assert "runs/device/l30" in out.stdout and "limit 67108864" in out.stdout

    out = _sh(repo, "restore", aside=aside)
    assert out.returncode == 0, out.stderr
    assert _git(repo, "status", "--short") == ""
    assert (repo / MOVED[0]).read_text() == f"content of {MOVED[0]}"

    # the next stage's weights become a new commit on the branch, its parent the first
    fetched2 = tmp_path / "fetched2"
    fetched2.mkdir()
    _parts(fetched2, "l30", b"\x02" * 1000)
    assert _sh(repo, "store", "l30", str(fetched2), aside=aside).returncode == 0
    assert _git(repo, "rev-parse", "weights/l30^").strip() == first
    assert (repo / "runs/device/l30/model.safetensors").read_bytes() == b"\x02" * 1000


def test_errors_are_one_line_exit_2(repo: Path, tmp_path: Path) -> None:
    aside = tmp_path / "aside"
    out = _sh(repo, "prep", "nope", aside=aside)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0
    assert "weights/nope" in out.stderr
    assert all((repo / f).exists() for f in MOVED)  # nothing moved
    out = _sh(repo, "store", "l30", str(tmp_path), aside=aside)
    assert out.returncode == 2 and "l30.tar.part-" in out.stderr
    assert _sh(repo, "bogus", aside=aside).returncode == 2
