"""Helpers of the conditioning tests: a tiny labelled CSV and a tiny training config."""

from __future__ import annotations

import csv
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _structures():
    from pymatgen.core import Lattice, Structure

    out = []
    for i in range(4):
        out.append(
            Structure.from_spacegroup(
                "Fm-3m", Lattice.cubic(4.1 + 0.1 * i), ["Li", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
            ).get_primitive_structure()
        )
        out.append(
            Structure(
                Lattice.from_parameters(2.9 + 0.05 * i, 2.9, 14.2, 90, 90, 120),
                ["Li", "Fe", "O", "O"],
                [[0, 0, 0.5], [0, 0, 0], [1 / 3, 2 / 3, 0.24], [2 / 3, 1 / 3, 0.76]],
            )
        )
    return out


def write_csv(path: Path) -> Path:
    """Eight Li-O / Li-Fe-O crystals with two scalar labels: ``band_gap`` and ``hardness``."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["material_id", "cif", "band_gap", "hardness"])
        for i, s in enumerate(_structures()):
            w.writerow([f"t-{i}", s.to(fmt="cif"), 0.4 * i, 50.0 + 10.0 * i])
    return path


def tiny_config(properties: list[str], **extra) -> dict:
    """configs/train/tiny.yaml with the given conditions (CPU-small, few steps)."""
    cfg = yaml.safe_load((REPO / "configs/train/tiny.yaml").read_text())
    cfg["conditions"] = {"properties": properties, "drop_prob": 0.2}
    cfg.update(batch_size=4, checkpoint_every=100, log_every=1, task="both")
    cfg["optim"]["warmup_steps"] = 1
    cfg.update(extra)
    return cfg
