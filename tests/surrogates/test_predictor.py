"""Property predictors: invariance, fit, calibration, save/load, warm start, OOD score."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from matgen.surrogates import (
    PredictorConfig,
    PropertyPredictor,
    calibrate_std,
    featurize,
    fit_predictor,
    interval_metrics,
)


def _family(base, n, seed):
    """``n`` scaled and rattled copies of the base structures; label = volume per atom."""
    from pymatgen.core import Lattice, Structure

    rng = np.random.default_rng(seed)
    out, y = [], []
    for i in range(n):
        s = base[i % len(base)]
        lat = s.lattice.matrix * rng.uniform(0.9, 1.15)
        cart = s.frac_coords @ lat + rng.normal(0, 0.03, (len(s), 3))
        t = Structure(Lattice(lat), s.species, cart, coords_are_cartesian=True)
        out.append(t)
        y.append(t.volume / len(t))
    return out, np.asarray(y)


@pytest.fixture(scope="module")
def trained():
    from pymatgen.core import Lattice, Structure

    base = [
        Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"],
                                  [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure(Lattice.cubic(5.43), ["Si"] * 2, [[0, 0, 0], [0.25, 0.25, 0.25]]),
        Structure(Lattice.from_parameters(4.1, 5.3, 6.2, 78.0, 95.0, 104.0),
                  ["Li", "Fe", "O", "O"],
                  [[0.1, 0.2, 0.3], [0.55, 0.45, 0.6], [0.8, 0.15, 0.05], [0.3, 0.7, 0.85]]),
    ]
    xs, ys = _family(base, 90, 0)
    xv, yv = _family(base, 30, 1)
    cfg = PredictorConfig(n_members=3, hidden=(32, 16), epochs=60, batch_size=32, seed=0)
    p = fit_predictor(xs, "vpa", cfg, labels=ys, val=xv, val_labels=yv)
    return p, base, (xs, ys), (xv, yv)


def test_descriptor_is_invariant(triclinic):
    from pymatgen.core import Structure
    from scipy.spatial.transform import Rotation

    rot = Rotation.random(random_state=0).as_matrix()
    rotated = Structure(triclinic.lattice.matrix @ rot.T, triclinic.species, triclinic.frac_coords)
    shifted = triclinic.copy()
    shifted.translate_sites(list(range(len(shifted))), [0.13, 0.4, 0.77])
    permuted = Structure(triclinic.lattice, triclinic.species[::-1], triclinic.frac_coords[::-1])
    sup = triclinic.copy()
    sup.make_supercell([1, 2, 1])
    f = featurize([triclinic, rotated, shifted, permuted, sup])
    assert torch.isfinite(f).all()
    for k in range(1, 5):
        assert torch.allclose(f[0], f[k], atol=1e-4), k


def test_fit_predicts_label_better_than_mean(trained):
    p, _, _, (xv, yv) = trained
    pr = p.predict(xv)
    assert pr.mean.shape == (30,) and (pr.std > 0).all()
    assert np.abs(pr.mean - yv).mean() < 0.5 * np.abs(yv - yv.mean()).mean()


def test_save_load_round_trip(trained, tmp_path):
    p, _, _, (xv, _) = trained
    p.save(tmp_path / "vpa")
    assert (tmp_path / "vpa" / "weights.safetensors").exists()
    q = PropertyPredictor.load(tmp_path / "vpa")
    a, b = p.predict(xv), q.predict(xv)
    assert q.label == "vpa" and q.calibration_scale == p.calibration_scale
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a.std, b.std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a.ood_score, b.ood_score, atol=1e-3)


def test_a_label_that_cannot_be_negative_is_never_predicted_negative(trained):
    """The same network, read as a band gap shifted so that most means fall below 0: those are
    reported as 0 eV (a lab list showed -0.002 eV), the std unchanged; another label keeps them."""
    import dataclasses

    p, _, _, (xv, _) = trained
    shift = float(np.quantile(p.predict(xv).mean, 0.8))
    raw = dataclasses.replace(p, label="vpa_shifted", y_mean=p.y_mean - shift).predict(xv)
    gap = dataclasses.replace(p, label="band_gap", y_mean=p.y_mean - shift).predict(xv)
    assert (raw.mean < 0).sum() > 15
    np.testing.assert_allclose(gap.mean, np.maximum(raw.mean, 0.0))
    np.testing.assert_allclose(gap.std, raw.std)


def test_calibration_scale_recovers_a_known_factor():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=20000)
    true_std = rng.uniform(0.5, 2.0, size=20000)
    y = mu + rng.normal(size=20000) * true_std
    s = calibrate_std(mu, true_std / 3.0, y)  # std under-estimated 3x
    assert s == pytest.approx(3.0, rel=0.03)
    m = interval_metrics(mu, true_std, y)
    assert m["coverage_68"] == pytest.approx(0.6827, abs=0.01)
    assert m["coverage_95"] == pytest.approx(0.95, abs=0.01)
    assert interval_metrics(mu, true_std / 3, y)["coverage_68"] < 0.4


def test_ood_score_higher_for_an_outlier(trained):
    from pymatgen.core import Lattice, Structure

    p, _, _, (xv, _) = trained
    outlier = Structure(Lattice.hexagonal(3.1, 12.0), ["Pu", "Hf", "Xe"],
                        [[0, 0, 0], [1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.6]])
    pr_in = p.predict(xv[:10])
    pr_out = p.predict([outlier])
    assert pr_out.ood_score[0] > 0.95
    assert pr_out.ood_score[0] > np.median(pr_in.ood_score)
    assert np.median(pr_in.ood_score) < 0.9


def test_warm_start_moves_towards_new_labels(trained):
    import copy

    p, _, (xs, ys), _ = trained
    q = copy.deepcopy(p)
    shifted = ys + 5.0  # a new labelling
    before = np.abs(q.predict(xs[:30]).mean - shifted[:30]).mean()
    q.update(xs, shifted, epochs=30)
    after = np.abs(q.predict(xs[:30]).mean - shifted[:30]).mean()
    assert after < 0.5 * before
    w = fit_predictor(xs, "vpa", q.config, labels=shifted, init=q)  # fit_predictor warm start
    assert np.abs(w.predict(xs[:30]).mean - shifted[:30]).mean() < before


def test_shipped_default_predictors(rock_salt):
    from matgen.surrogates import load_default_predictors

    preds = {p.label: p for p in load_default_predictors()}
    assert {"band_gap", "formation_energy_per_atom"} <= set(preds)
    ef = preds["formation_energy_per_atom"].predict([rock_salt])
    assert -3.0 < ef.mean[0] < -1.5  # NaCl: MP about -2.1 eV/atom
    assert 0 < ef.std[0] < 1.0 and 0 <= ef.ood_score[0] <= 1
    gap = preds["band_gap"].predict([rock_salt])
    assert gap.mean[0] > 2.0  # NaCl is a wide-gap insulator (MP PBE about 5 eV)
    assert preds["band_gap"].metrics["test"]["coverage_95"] > 0.85
