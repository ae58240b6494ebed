"""De novo metrics: coverage, Wasserstein distances, validity rates, uniqueness and novelty."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from matgen.evaluation import (
    GenConfig,
    cov_cutoffs,
    coverage,
    evaluate_generation,
    guess_dataset,
    wasserstein,
)
from matgen.evaluation._fingerprints import scale_composition_fingerprints


def test_published_cutoffs_and_dataset_guess():
    assert cov_cutoffs("mp20") == (0.4, 10.0)
    assert cov_cutoffs("perov_5") == (0.2, 4.0)
    assert cov_cutoffs("carbon") == (0.2, 4.0)
    with pytest.raises(KeyError):
        cov_cutoffs("qm9")
    assert guess_dataset("/x/mp20_reduced/test.csv") == "mp20"
    assert guess_dataset("/x/perov_5/test.csv") == "perov5"
    assert guess_dataset("/x/other.csv") is None


def test_coverage_hand_computed():
    # 2-D toy fingerprints: gen 0 is near ref 0 in both spaces, gen 1 near ref 1 in structure
    # only, gen 2 far from all.
    gs = np.array([[0.0, 0.0], [1.0, 0.0], [9.0, 9.0]])
    gc = np.array([[0.0, 0.0], [5.0, 0.0], [9.0, 9.0]])
    rs = np.array([[0.1, 0.0], [1.0, 0.1], [3.0, 3.0]])
    rc = np.array([[0.0, 0.5], [0.0, 0.0], [3.0, 3.0]])
    out = coverage(gs, gc, rs, rc, struc_cutoff=0.2, comp_cutoff=1.0)
    # recall: ref 0 (gen 0: 0.1 / 0.5) yes; ref 1: struct via gen 1 (0.1) but comp min over
    # all gens is 0 (gen 0) -> CDVAE takes the two minima independently -> yes; ref 2 no
    assert out["cov_recall"] == pytest.approx(2 / 3)
    # precision: gen 0 yes; gen 1: struct 0.1 (ref 1), comp min 5 -> no; gen 2 no
    assert out["cov_precision"] == pytest.approx(1 / 3)
    # the COV-P denominator is every generated crystal, with or without fingerprints
    out = coverage(gs, gc, rs, rc, 0.2, 1.0, num_generated=6)
    assert out["cov_precision"] == pytest.approx(1 / 6)


def test_composition_scaler_replaces_nan():
    x = np.full((2, 132), np.nan)
    x[1] = 0.0
    z = scale_composition_fingerprints(x, means=np.zeros(132), stds=np.ones(132))
    assert np.all(z[0] == 0) and np.all(z[1] == 0)
    z = scale_composition_fingerprints(np.ones((1, 132)) * 3, np.ones(132), np.full(132, 2.0))
    assert np.allclose(z, 1.0)


def test_wasserstein():
    assert wasserstein([0, 1], [0, 1]) == 0
    assert wasserstein([0.0], [2.0]) == pytest.approx(2.0)
    assert wasserstein([], [1.0]) is None


def _cscl_nacl() -> Structure:
    """NaCl in the CsCl arrangement: same composition as rock salt, another crystal."""
    return Structure(Lattice.cubic(3.3), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_evaluate_generation_without_coverage(tiny_structures, rock_salt, mkgen, mkref):
    bad = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])  # too close
    nacl2 = Structure(Lattice.cubic(6.0), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5, 0, 0], [0, 0.5, 0]])
    gen = [rock_salt, rock_salt.copy(), _cscl_nacl(), bad, nacl2]
    res = evaluate_generation(
        mkgen(gen, None),
        mkref(tiny_structures),
        train=mkref([rock_salt]),
        config=GenConfig(coverage=False, cache_dir=""),
        progress=False,
    )
    m = res.metrics
    assert m["num_generated"] == 5 and m["num_valid"] == 3
    assert m["struct_valid"] == pytest.approx(4 / 5)
    assert m["comp_valid"] == pytest.approx(4 / 5)
    assert m["valid"] == pytest.approx(3 / 5)
    # rock salt and its copy are one crystal; the CsCl-type NaCl is another
    assert m["num_unique"] == 2 and m["uniqueness"] == pytest.approx(2 / 3)
    # only the CsCl-type NaCl is not in the training set
    assert m["num_novel"] == 1 and m["novelty"] == pytest.approx(1 / 3)
    rows = res.per_structure
    assert rows[1]["duplicate_of"] == 0 and rows[1]["unique"] is False
    assert rows[3]["invalid_reason"] == "atoms_too_close"
    assert rows[4]["invalid_reason"] == "smact_invalid"
    # densities: the distribution metric uses valid crystals and all references
    ref_d = [s.density for s in tiny_structures]
    gen_d = [rock_salt.density, rock_salt.density, _cscl_nacl().density]
    from scipy.stats import wasserstein_distance

    assert m["wdist_density"] == pytest.approx(wasserstein_distance(gen_d, ref_d))
    assert m["wdist_num_elements"] == pytest.approx(wasserstein_distance([2, 2, 2], [2, 1, 3, 1]))


def test_property_wasserstein_from_values(tiny_structures, mkgen, mkref):
    res = evaluate_generation(
        mkgen(tiny_structures, None),
        mkref(tiny_structures),
        config=GenConfig(coverage=False, uniqueness=False, cache_dir=""),
        property_generated=[1.0, 2.0, 3.0, 4.0],
        property_reference=[1.0, 2.0, 3.0, 5.0],
        progress=False,
    )
    assert res.metrics["wdist_property"] == pytest.approx(0.25)


def test_evaluate_generation_with_coverage(tiny_structures, diamond_si, mkgen, mkref, tmp_path):
    """Fingerprints through matminer: a reference set against itself is fully covered."""
    pytest.importorskip("matminer")
    refs = tiny_structures[:3]
    cfg = GenConfig(dataset="mp20", uniqueness=False, cache_dir=str(tmp_path))
    res = evaluate_generation(mkgen(refs, None), mkref(refs), config=cfg, progress=False)
    m = res.metrics
    assert m["cov_recall"] == 1.0 and m["cov_precision"] == 1.0
    assert m["cov_cutoffs"]["struc"] == 0.4
    # only diamond Si generated: recall 1/3 at most
    res2 = evaluate_generation(mkgen([diamond_si], None), mkref(refs), config=cfg, progress=False)
    assert res2.metrics["cov_recall"] == pytest.approx(1 / 3)
    assert res2.metrics["cov_precision"] == 1.0
    # the reference fingerprints were cached on disk (JSON, never pickle) and reused
    cached = list((tmp_path / "evaluation").glob("describe_*.json.gz"))
    assert cached and not list((tmp_path / "evaluation").glob("*.pkl"))
    res3 = evaluate_generation(mkgen([diamond_si], None), mkref(refs), config=cfg, progress=False)
    assert res3.metrics == res2.metrics


def test_describe_cache_never_unpickles_and_survives_junk(tmp_path, monkeypatch):
    """A pickle planted in the cache folder is never opened; a damaged or foreign JSON cache
    is recomputed (issue 20, item 7)."""
    import gzip
    import pickle

    from matgen.evaluation import _describe

    cifs = ["data_x\n_cell_length_a 1\n"]
    cfg = GenConfig(cache_dir=str(tmp_path))
    d = tmp_path / "evaluation"
    d.mkdir()

    class Boom:
        def __reduce__(self):
            return (pytest.fail, ("unpickled a cache file",))

    for name in ("describe_x.pkl",):
        (d / name).write_bytes(pickle.dumps(Boom()))
    calls = []
    monkeypatch.setattr(
        _describe,
        "parallel_map",
        lambda fn, items, **kw: calls.append(1) or [_describe._describe(i) for i in items],
    )
    first = _describe._describe_references(cifs, False, cfg, 1, False, "t")
    again = _describe._describe_references(cifs, False, cfg, 1, False, "t")
    assert first == again and len(calls) == 1
    (cached,) = d.glob("describe_*.json.gz")
    for junk in (b"not gzip", gzip.compress(b"[1, 2, 3]"), gzip.compress(b'{"a": 1}')):
        cached.write_bytes(junk)
        assert _describe._describe_references(cifs, False, cfg, 1, False, "t") == first
    assert len(calls) == 4
