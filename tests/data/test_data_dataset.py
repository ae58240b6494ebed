"""CrystalDataset batching, the processed cache (hit, invalidation), registry resolution."""

from __future__ import annotations

import csv
import logging
import math

import pytest
import torch
from pymatgen.io.cif import CifWriter

import matgen.data._dataset as dataset_mod
from matgen.crystal import read_crystals
from matgen.data import CrystalDataset, DatasetNotFound, load_dataset, resolve_source


def _write_csv(path, structures, gaps=None):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["material_id", "band_gap", "pretty_formula", "cif"])
        for i, s in enumerate(structures):
            gap = gaps[i] if gaps is not None else 0.5 * i
            w.writerow([f"mp-{i}", gap, s.composition.reduced_formula, str(CifWriter(s))])


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("MATGEN_CACHE_DIR", str(d))
    return d


@pytest.fixture
def tiny_csv(tmp_path, tiny_structures):
    p = tmp_path / "tiny.csv"
    _write_csv(p, tiny_structures * 2)  # 8 crystals, 30 atoms
    return p


def test_batch_matches_reader(tiny_csv, cache):
    ds = load_dataset(tiny_csv, workers=1)
    ref = read_crystals(tiny_csv, workers=1).batch
    assert len(ds) == 8 and ds.property_names == ["band_gap"]
    assert ds.metadata["pretty_formula"][0] == "NaCl" and ds.formulas[1] == "Si"
    idx = [5, 0, 3, 3]
    b = ds.batch(idx)
    r = ref[idx]
    assert b.ids == r.ids == ["mp-5", "mp-0", "mp-3", "mp-3"]
    assert torch.equal(b.atomic_numbers, r.atomic_numbers)
    assert torch.equal(b.num_atoms, r.num_atoms)
    torch.testing.assert_close(b.frac_coords, r.frac_coords)
    torch.testing.assert_close(b.lattice, r.lattice)
    torch.testing.assert_close(b.properties["band_gap"], r.properties["band_gap"])
    one = ds[2]
    assert one.num_crystals == 1 and one.ids == ["mp-2"] and one.num_atoms.tolist() == [4]
    assert ds[-1].ids == ["mp-7"]
    assert ds[1:3].ids == ["mp-1", "mp-2"]
    assert ds.batch(torch.tensor([True] + [False] * 7)).ids == ["mp-0"]
    assert ds.batch([]).num_crystals == 0
    with pytest.raises(IndexError):
        ds[8]
    seen = [
        i
        for b in ds.loader(3, shuffle=True, generator=torch.Generator().manual_seed(0))
        for i in b.ids
    ]
    assert sorted(seen) == sorted(ds.ids)


def test_stats(tiny_csv, cache, tiny_structures):
    ds = load_dataset(tiny_csv, workers=1)
    st = ds.stats()
    assert st.num_crystals == 8 and st.num_atoms_total == 30
    assert st.atoms_per_cell == {1: 2, 2: 2, 4: 2, 8: 2}
    assert st.elements["Fe"] == 4 and st.elements["Na"] == 2
    vpa = [s.volume / len(s) for s in tiny_structures] * 2
    assert st.volume_per_atom_mean == pytest.approx(sum(vpa) / 8, rel=1e-5)
    assert st.properties["band_gap"]["mean"] == pytest.approx(1.75)
    assert st.properties["band_gap"]["count"] == 8


def test_cache_hit_and_invalidation(tiny_csv, cache, monkeypatch, tiny_structures):
    first = load_dataset(tiny_csv, workers=1)
    files = list((cache / "processed").glob("*.pt"))
    assert len(files) == 1
    assert first.sha256 and len(first.sha256) == 64

    def boom(*a, **k):
        raise AssertionError("parsed again although the cache is valid")

    monkeypatch.setattr(dataset_mod, "read_crystals", boom)
    second = load_dataset(tiny_csv, workers=1)
    assert second.ids == first.ids and torch.equal(second.frac_coords, first.frac_coords)
    assert second.sha256 == first.sha256
    # other processing options have their own cache entry
    with pytest.raises(AssertionError, match="parsed again"):
        load_dataset(tiny_csv, max_atoms=4, workers=1)
    monkeypatch.setattr(dataset_mod, "read_crystals", read_crystals)
    small = load_dataset(tiny_csv, max_atoms=4, workers=1)
    assert len(small) == 6 and len(small.errors) == 2
    assert "max_atoms=4" in small.errors[0].reason
    # left out by the caller's limit, not bad data; the cache keeps the difference
    assert all(e.excluded for e in small.errors)
    monkeypatch.setattr(dataset_mod, "read_crystals", boom)
    assert [e.excluded for e in load_dataset(tiny_csv, max_atoms=4, workers=1).errors] == [
        True, True]
    monkeypatch.setattr(dataset_mod, "read_crystals", read_crystals)
    # change the file: it is read again
    _write_csv(tiny_csv, tiny_structures[:3])
    third = load_dataset(tiny_csv, workers=1)
    assert len(third) == 3 and third.sha256 != first.sha256
    # a corrupt cache file is ignored and rewritten
    for f in (cache / "processed").glob("*.pt"):
        f.write_bytes(b"garbage")
    assert len(load_dataset(tiny_csv, workers=1)) == 3


def test_bad_rows_skipped_counted_logged(tmp_path, cache, tiny_structures, caplog):
    p = tmp_path / "mixed.csv"
    _write_csv(p, tiny_structures, gaps=[1.0, float("nan"), 2.0, 3.0])
    # make row 2 (diamond Si) unparseable by breaking its cell
    rows = p.read_text().split("\nmp-")
    rows[2] = rows[2].replace("_cell_length_a", "_cell_length_a   abc\n#", 1)
    p.write_text("\nmp-".join(rows))
    with caplog.at_level(logging.WARNING, logger="matgen.data"):
        ds = load_dataset(p, workers=1)
    assert len(ds) == 3 and ds.num_entries == 4
    assert [e.entry for e in ds.errors] == ["mixed.csv:row 2 (mp-1)"]
    assert not ds.errors[0].excluded  # bad data, not a size limit
    assert "skipped 1 of 4 entries" in caplog.text and "row 2 (mp-1)" in caplog.text
    assert ds.nan_labels == {}  # the NaN label was on the skipped row


def test_nan_labels_kept_as_missing(tmp_path, cache, tiny_structures):
    p = tmp_path / "nan.csv"
    _write_csv(p, tiny_structures, gaps=[1.0, float("nan"), 2.0, ""])
    ds = load_dataset(p, workers=1)
    assert len(ds) == 4 and ds.nan_labels == {"band_gap": 2}
    assert math.isnan(ds[1].properties["band_gap"].item())


def test_save_load_round_trip(tiny_csv, cache, tmp_path):
    ds = load_dataset(tiny_csv, workers=1, dtype=torch.float64)
    ds.save(tmp_path / "d.pt")
    back = CrystalDataset.load(tmp_path / "d.pt", dtype=torch.float64)
    assert back.ids == ds.ids and back.formulas == ds.formulas
    assert torch.equal(back.lattice, ds.lattice) and back.lattice.dtype == torch.float64


def test_registry_resolution_and_fallback(tmp_path, cache, monkeypatch, caplog, tiny_structures):
    root = tmp_path / "data"
    (root / "perov_5").mkdir(parents=True)
    _write_csv(root / "perov_5" / "val.csv", tiny_structures)
    (root / "mp20_reduced").mkdir()
    _write_csv(root / "mp20_reduced" / "test.csv", tiny_structures[:2])
    monkeypatch.setenv("MATGEN_DATA_DIR", str(root))
    assert resolve_source("mp20", "test") == root / "mp20_reduced" / "test.csv"
    with caplog.at_level(logging.WARNING, logger="matgen.data"):
        assert resolve_source("perov5", "train") == root / "perov_5" / "val.csv"
    assert "no train split" in caplog.text and "using the val split" in caplog.text
    # explicit data_dir beats MATGEN_DATA_DIR
    other = tmp_path / "other" / "perov_5"
    other.mkdir(parents=True)
    _write_csv(other / "test.csv", tiny_structures[:1])
    assert resolve_source("perov5", "test", data_dir=other.parent) == other / "test.csv"
    # a folder with split files, and a plain path
    assert resolve_source(root / "mp20_reduced", "test") == root / "mp20_reduced" / "test.csv"
    ds = load_dataset("mp20", "test", workers=1)
    assert len(ds) == 2 and ds.split == "test" and ds.name == "mp20"
    with pytest.raises(DatasetNotFound, match="known: mp20"):
        resolve_source("nosuchset")
    with pytest.raises(DatasetNotFound, match="not found"):
        resolve_source("carbon24", "val", allow_download=False)


def test_shared_mp20_resolves(datasets_dir, monkeypatch, cache):
    monkeypatch.setenv("MATGEN_DATA_DIR", str(datasets_dir))
    assert resolve_source("mp20", "train").name == "train.csv"
    assert resolve_source("mpts52", "test").name == "test.csv.gz"
    assert resolve_source("carbon24", "train").name == "val.csv"


@pytest.mark.slow
def test_shared_mp20_train_loads_fully(datasets_dir, monkeypatch, cache):
    monkeypatch.setenv("MATGEN_DATA_DIR", str(datasets_dir))
    ds = load_dataset("mp20", "train")
    assert ds.num_entries == 9894 and len(ds) + len(ds.errors) == 9894
    assert int(ds.num_atoms.max()) <= 20


def test_string_packing_round_trips():
    from matgen.data._dataset import _pack, _unpack

    for items in ([], [""], ["a", "", "b,c"], ["x\x1ey", "z"]):
        assert _unpack(_pack(items)) == items


def test_random_split(tiny_csv, cache):
    ds = load_dataset(tiny_csv, workers=1)
    a, b = ds.random_split([0.75, 0.25], seed=1)
    assert (len(a), len(b)) == (6, 2)
    assert sorted(a.ids + b.ids) == sorted(ds.ids)
    assert a.random_split([1.0])[0].ids == a.ids
    again, _ = ds.random_split([0.75, 0.25], seed=1)
    assert again.ids == a.ids
    i = ds.ids.index(b.ids[0])
    assert b.formulas[0] == ds.formulas[i]
    assert torch.equal(b[0].frac_coords, ds[i].frac_coords)
    with pytest.raises(ValueError):
        ds.random_split([0.5, 0.6])


def test_reduction_on_load_has_its_own_cache_entry(tmp_path, cache, rock_salt):
    p = tmp_path / "nacl.csv"
    _write_csv(p, [rock_salt])
    assert load_dataset(p, workers=1).num_atoms.tolist() == [8]
    assert load_dataset(p, reduce="primitive", workers=1).num_atoms.tolist() == [2]
    assert load_dataset(p, workers=1).num_atoms.tolist() == [8]
    assert len(list((cache / "processed").glob("*.pt"))) == 2
    with pytest.raises(ValueError, match="reduce"):
        load_dataset(p, reduce="delaunay")
