"""Readers and writers: round trips through CIF, CSV and extxyz, ids, properties, metadata."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher

from matgen.crystal import (
    CrystalBatch,
    read_crystals,
    reduce_batch,
    write_cif,
    write_extxyz,
)


def _csv(path, structures, ids, extra_cols=None):
    import csv

    from pymatgen.io.cif import CifWriter

    cols = extra_cols or {}
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["material_id", *cols, "cif"])
        for i, (s, mid) in enumerate(zip(structures, ids)):
            w.writerow([mid, *(v[i] for v in cols.values()), str(CifWriter(s))])


def test_cif_folder_round_trip(tmp_path, tiny_structures):
    batch = CrystalBatch.from_structures(tiny_structures, ids=["nacl", "si", "tric", "fe"])
    files = write_cif(tmp_path / "cifs", batch)
    assert sorted(f.name for f in files) == ["fe.cif", "nacl.cif", "si.cif", "tric.cif"]
    res = read_crystals(tmp_path / "cifs", workers=1)
    assert res.num_bad == 0 and res.num_good == 4
    assert res.batch.ids == ["fe", "nacl", "si", "tric"]  # sorted file names
    back = {i: s for i, s in zip(res.batch.ids, res.structures())}
    sm = StructureMatcher()
    for name, s in zip(["nacl", "si", "tric", "fe"], tiny_structures):
        assert sm.fit(s, back[name]), name
    assert res.formulas[res.batch.ids.index("nacl")] == "NaCl"


def test_multi_block_cif_keeps_ids(tmp_path, tiny_structures):
    batch = CrystalBatch.from_structures(tiny_structures, ids=["a-1", "b-2", "c-3", "d-4"])
    (path,) = write_cif(tmp_path / "all.cif", batch)
    res = read_crystals(path, workers=1)
    assert res.batch.ids == ["a-1", "b-2", "c-3", "d-4"]
    assert res.entries[1] == "all.cif:block 2 (b-2)"
    sm = StructureMatcher()
    assert all(sm.fit(a, b) for a, b in zip(tiny_structures, res.structures()))


def test_csv_properties_metadata_and_ids(tmp_path, tiny_structures):
    p = tmp_path / "d.csv"
    _csv(
        p,
        tiny_structures,
        ["mp-1", "mp-2", "mp-3", "mp-4"],
        {
            "band_gap": [1.5, 0.0, "", 2.0],
            "pretty_formula": ["NaCl", "Si", "LiFeO2", "Fe"],
            "elements": ["['Na', 'Cl']", "['Si']", "['Li', 'Fe', 'O']", "['Fe']"],
            "theoretical": ["True", "False", "True", "False"],
        },
    )
    res = read_crystals(p, workers=1)
    assert res.num_good == 4
    assert res.property_names == ["band_gap", "theoretical"]
    gap = res.batch.properties["band_gap"]
    assert gap[0].item() == 1.5 and math.isnan(gap[2].item())
    assert res.nan_labels == {"band_gap": 1}
    assert res.batch.properties["theoretical"].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert res.metadata["pretty_formula"] == ["NaCl", "Si", "LiFeO2", "Fe"]
    assert res.metadata["elements"][0] == "['Na', 'Cl']"
    assert res.entries[0] == "d.csv:row 1 (mp-1)"
    assert res.batch.num_atoms.tolist() == [8, 2, 4, 1]
    assert (res.batch.frac_coords >= 0).all() and (res.batch.frac_coords < 1).all()


def test_csv_without_id_column_uses_row_numbers(tmp_path, tiny_structures):
    from pymatgen.io.cif import CifWriter

    p = tmp_path / "noid.csv"
    import csv

    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["", "cif", "energy"])  # an unnamed pandas index column is ignored
        for i, s in enumerate(tiny_structures[:2]):
            w.writerow([i, str(CifWriter(s)), -1.0 * i])
    res = read_crystals(p, workers=1)
    assert res.batch.ids == ["1", "2"] and res.property_names == ["energy"]


def test_extxyz_keeps_info_fields(tmp_path, tiny_structures):
    batch = CrystalBatch.from_structures(
        tiny_structures,
        ids=["s0", "s1", "s2", "s3"],
        properties={"band_gap": [1.0, float("nan"), 3.0, 4.0]},
        dtype=torch.float64,
    )
    p = write_extxyz(
        tmp_path / "out.extxyz",
        batch,
        info={"e_above_hull": [0.1, 0.2, 0.3, 0.4], "note": ["a", "b", "c", "d"]},
    )
    from ase.io import read

    frames = read(p, index=":")
    assert [a.info["material_id"] for a in frames] == ["s0", "s1", "s2", "s3"]
    assert frames[2].info["e_above_hull"] == pytest.approx(0.3)
    res = read_crystals(p, workers=1, dtype=torch.float64)
    assert res.batch.ids == ["s0", "s1", "s2", "s3"]
    assert set(res.property_names) == {"band_gap", "e_above_hull"}
    assert res.batch.properties["e_above_hull"].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert math.isnan(res.batch.properties["band_gap"][1].item())
    assert res.metadata["note"] == ["a", "b", "c", "d"]
    torch.testing.assert_close(res.batch.lattice, batch.lattice)
    d = (res.batch.frac_coords - batch.frac_coords).abs()
    assert torch.minimum(d, 1 - d).max() < 1e-8
    assert res.batch.atomic_numbers.tolist() == batch.atomic_numbers.tolist()


def test_extxyz_from_atoms_and_energy_key(tmp_path, rock_salt):
    from pymatgen.io.ase import AseAtomsAdaptor

    a = AseAtomsAdaptor.get_atoms(rock_salt)
    a.info["energy"] = -3.5  # ASE moves this into a calculator on read; we keep it
    a.info["sample_id"] = "gen-7"
    p = write_extxyz(tmp_path / "a.extxyz", [a])
    res = read_crystals(p, workers=1)
    assert res.batch.ids == ["gen-7"]
    assert res.batch.properties["energy"].item() == pytest.approx(-3.5)


def test_gzip_csv(tmp_path, tiny_structures):
    import gzip

    p = tmp_path / "d.csv"
    _csv(p, tiny_structures, ["a", "b", "c", "d"])
    gz = tmp_path / "d.csv.gz"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    res = read_crystals(gz, workers=1)
    assert res.num_good == 4 and res.batch.ids == ["a", "b", "c", "d"]


@pytest.mark.parametrize("mode", ["niggli", "primitive"])
def test_reduction(tmp_path, rock_salt, mode):
    batch = CrystalBatch.from_structures([rock_salt], ids=["nacl"], dtype=torch.float64)
    red = reduce_batch(batch, mode)
    expected = 2 if mode == "primitive" else 8
    assert red.num_atoms.tolist() == [expected]
    assert StructureMatcher().fit(rock_salt, red.to_structures()[0])
    write_cif(tmp_path / "c", batch)
    res = read_crystals(tmp_path / "c", reduce=mode, workers=1)
    assert res.batch.num_atoms.tolist() == [expected]
    # a Niggli cell has |cos| of the angles bounded and ordered lengths a <= b <= c
    lengths = np.linalg.norm(res.batch.lattice[0].double().numpy(), axis=1)
    assert lengths[0] <= lengths[1] + 1e-6 <= lengths[2] + 2e-6


def test_missing_path_raises():
    with pytest.raises(FileNotFoundError):
        read_crystals("/nonexistent/file.csv")


def test_generated_extxyz_sample_ids_with_shared_material_id(tmp_path, tiny_structures):
    """Sampled files carry several frames per source material_id and a unique sample_id."""
    batch = CrystalBatch.from_structures(tiny_structures[:2] * 2, ids=["mp-1"] * 2 + ["mp-2"] * 2)
    p = write_extxyz(tmp_path / "s.extxyz", batch, info={"sample_id": ["a", "b", "c", "d"]})
    res = read_crystals(p, workers=1)
    assert res.num_bad == 0 and res.batch.ids == ["a", "b", "c", "d"]
    assert res.metadata["material_id"] == ["mp-1", "mp-1", "mp-2", "mp-2"]
    assert res.entries[0] == "s.extxyz:frame 1 (a)"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-8-sig"])
def test_text_encodings_are_read(tmp_path, tiny_structures, encoding):
    p = tmp_path / "d.csv"
    _csv(p, tiny_structures, ["a", "b", "c", "d"])
    q = tmp_path / "enc.csv"
    q.write_bytes(p.read_text().encode(encoding))
    res = read_crystals(q, workers=1)
    assert res.num_bad == 0 and res.batch.ids == ["a", "b", "c", "d"]
