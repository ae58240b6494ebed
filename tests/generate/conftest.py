"""A tiny real teacher (3 steps) and its consistency-distilled student (2 steps), trained once
per session on eight in-memory crystals with fixed seeds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[2]


def _crystals():
    from pymatgen.core import Lattice, Structure

    from matgen.crystal import CrystalBatch

    out = []
    for i, a in enumerate((5.5, 5.64, 5.8, 5.9)):
        out.append(Structure.from_spacegroup(
            "Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
        ).get_primitive_structure())
        out.append(Structure(
            Lattice.cubic(3.9 + 0.05 * i), ["Sr", "Ti", "O", "O", "O"],
            [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
        ))
    batch = CrystalBatch.from_structures(out, ids=[f"m-{i}" for i in range(len(out))])
    gaps = torch.tensor([0.5 * i for i in range(len(out))], dtype=batch.lattice.dtype)
    return batch.__class__(batch.atomic_numbers, batch.frac_coords, batch.lattice,
                           batch.num_atoms, {"band_gap": gaps}, batch.ids)


def _config(**update):
    from matgen.training import TrainConfig

    raw = yaml.safe_load((REPO / "configs/train/tiny.yaml").read_text())
    raw.update(conditions={"properties": ["band_gap"], "drop_prob": 0.2}, batch_size=4,
               checkpoint_every=3, log_every=1, max_steps=3)
    raw.update(update)
    return TrainConfig(**raw)


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    from matgen.training import train

    d = tmp_path_factory.mktemp("pinned")
    data = _crystals()
    teacher = train(_config(), data=data, out=d / "teacher", device="cpu", progress=False,
                    log=None, val_data=data)
    tck = teacher.checkpoint
    student = train(_config(distill={"teacher": str(tck), "intervals": 4}, max_steps=2),
                    data=data, out=d / "student", device="cpu", progress=False, log=None)
    return teacher, student, d


@pytest.fixture
def tiny_setup():
    """``(config(**update), crystals)``: the tiny config factory and the eight crystals."""
    return _config, _crystals()
