"""A tiny generator checkpoint, stand-in scorer / oracle (every candidate a hit) and a campaign
YAML with ``generator.finetune``, shared by the fine-tuning tests and their kill -9 script."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def tiny_checkpoint(folder: Path, csv: Path) -> Path:
    """A tiny de novo model conditioned on band_gap and e_above_hull (3 steps on ``csv``)."""
    from matgen.training import TrainConfig, train

    raw = yaml.safe_load((REPO / "configs/train/tiny.yaml").read_text())
    raw.update(conditions={"properties": ["band_gap", "e_above_hull"], "drop_prob": 0.2},
               task="gen", batch_size=8, checkpoint_every=3, log_every=1, max_steps=3)
    raw["data"]["train_split"] = "train"
    raw["model"].update(hidden=16, vectors=4, layers=1)
    res = train(TrainConfig(**raw), data=str(csv), out=folder / "tiny_run", device="cpu",
                progress=False, log=None)
    return Path(res.checkpoint)


class HitScorer:
    """Scores every crystal inside the windows (band gap 2 eV, on the hull)."""

    model_version = "hit-scorer"
    hull_version = "none"

    def __call__(self, batch, seed):
        return [{"band_gap": 2.0, "band_gap_std": 0.3, "e_above_hull": 0.0,
                 "e_above_hull_std": 0.02, "ood": 0.0, "ood_flag": 0.0} for _ in batch.ids]

    def update(self, structures, labels):
        return self.model_version


class HitOracle:
    """Labels every candidate a hit."""

    name = "hit-oracle"
    synchronous = True

    def request(self, candidates, round_index):
        return {c["id"]: {"band_gap": 2.0, "e_above_hull": 0.0} for c in candidates}


def write_config(folder: Path, csv: Path, ckpt: Path, rounds: int = 2, steps: int = 2,
                 min_distinct_share: float = 0.0, **finetune) -> Path:
    """The campaign YAML; ``finetune``: more ``generator.finetune`` keys."""
    cfg = {
        "name": "ft",
        "seed": 1,
        "rounds": rounds,
        "pool_size": 4,
        "batch_size": 2,
        "objectives": [{"property": "band_gap", "minimum": 1.0, "maximum": 3.0},
                       {"property": "e_above_hull", "maximum": 0.05, "scale": 0.05}],
        "generator": {"kind": "model", "checkpoint": str(ckpt), "steps": 3, "chunk_size": 4,
                      "finetune": {"every": 1, "steps": steps, "replay": 0.5, "batch_size": 4,
                                   "replay_csv": str(csv), "device": "cpu",
                                   "min_distinct_share": min_distinct_share, **finetune}},
        "scorer": {"kind": "dataset", "labels_csv": str(csv)},
        "oracle": {"kind": "lab", "properties": ["band_gap", "e_above_hull"]},
        "acquisition": {"kind": "random"},
        "work_dir": str(folder / "work"),
        "export_on_finish": False,
    }
    path = folder / "ft.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def campaign(config: Path, csv: Path):
    """The campaign with the stand-ins; round 0 draws rock salts from ``csv`` (a fine-tuned
    version, once recorded, replaces that generator)."""
    from matgen.campaign import Campaign, DatasetGenerator, load_config

    return Campaign(load_config(config), generator=DatasetGenerator(csv), scorer=HitScorer(),
                    oracle=HitOracle())


def run_killer(config: Path, csv: Path, point: str, cache_dir: Path) -> int:
    """Run the campaign in ``_finetune_killer.py`` (SIGKILL at ``point``); its return code."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           "MATGEN_CACHE_DIR": str(cache_dir)}
    proc = subprocess.run([sys.executable, str(Path(__file__).parent / "_finetune_killer.py"),
                           str(config), str(csv), point], check=False, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr[-2000:]
    return proc.returncode
