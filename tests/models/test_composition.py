"""The composition model: its order, its constraints when sampling, training and its files."""

from __future__ import annotations

import json
import math

import pytest
import torch

from matgen.models import (
    CompositionConfig,
    CompositionEnsemble,
    CompositionFileError,
    CompositionModel,
    encode,
    load_composition_model,
    save_composition_model,
)
from matgen.models._composition import element_ranks


def _model(**kw) -> CompositionModel:
    torch.manual_seed(0)
    cfg = CompositionConfig(hidden=16, layers=2, max_atoms=kw.pop("max_atoms", 20),
                            conditions=["band_gap"], cond_mean=[1.0], cond_std=[2.0], **kw)
    return CompositionModel(cfg)


def test_order_is_electronegativity_with_missing_values_last():
    ranks = element_ranks(94)
    assert ranks[3 - 1] < ranks[26 - 1] < ranks[8 - 1] < ranks[9 - 1]  # Li < Fe < O < F
    assert ranks[2 - 1] > ranks[9 - 1]  # He has no Pauling value: after F
    assert sorted(ranks) == list(range(94))


def test_encode_spells_each_composition_one_way():
    el, cnt, valid = encode([{8: 4, 26: 2, 3: 2}, {11: 1}])
    assert el[0].tolist() == [3, 26, 8, 0]  # Li, Fe, O, stop
    assert cnt[0].tolist() == [2, 2, 4, 0]
    assert el[1].tolist() == [11, 0, 0, 0] and valid[1].tolist() == [True, True, False, False]


def test_nll_is_finite_and_per_crystal():
    m = _model()
    el, cnt, valid = encode([{8: 4, 26: 2, 3: 2}, {11: 1, 17: 1}])
    nll = m.nll(el, cnt, valid, m.normalise(torch.tensor([[0.5], [math.nan]])))
    assert nll.shape == (2,) and torch.isfinite(nll).all() and (nll > 0).all()


def test_samples_obey_the_atom_limit_and_the_allowed_elements():
    m = _model(max_atoms=6)
    allowed = torch.zeros(94, dtype=torch.bool)
    allowed[[2, 25, 7]] = True  # Li, Fe, O
    g = torch.Generator().manual_seed(1)
    comps = m.sample(torch.full((64, 1), math.nan), allowed=allowed, generator=g)
    assert len(comps) == 64
    for c in comps:
        assert c and set(c) <= {3, 26, 8}
        assert all(n >= 1 for n in c.values()) and sum(c.values()) <= 6
    free = m.sample(torch.full((64, 1), math.nan), generator=torch.Generator().manual_seed(1))
    assert len({z for c in free for z in c}) > 3  # untrained: elements well beyond Li-Fe-O


def test_guided_sampling_draws_one_composition_per_row():
    m = _model()
    cond = torch.tensor([[2.5]] * 10 + [[math.nan]] * 6)
    comps = m.sample(cond, guidance=2.0, temperature=0.8,
                     generator=torch.Generator().manual_seed(0))
    assert len(comps) == 16 and all(1 <= sum(c.values()) <= 20 for c in comps)


def test_training_learns_the_compositions():
    from pymatgen.core import Lattice, Structure

    from matgen.crystal import CrystalBatch
    from matgen.data import CrystalDataset
    from matgen.training import CompositionTrainConfig, train_composition_model

    structs = []
    for i in range(12):
        structs.append(Structure(Lattice.cubic(4 + 0.01 * i), ["Na", "Cl"],
                                 [[0, 0, 0], [0.5, 0.5, 0.5]]))
        structs.append(Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
                                 [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5],
                                  [0, 0.5, 0.5]]))
    b = CrystalBatch.from_structures(structs)
    gaps = torch.tensor([0.0, 3.0] * 12, dtype=b.lattice.dtype)
    ds = CrystalDataset(b.atomic_numbers, b.frac_coords, b.lattice, b.num_atoms,
                        {"band_gap": gaps})
    cfg = CompositionTrainConfig(epochs=40, patience=40, batch_size=8, lr=1e-2,
                                 model=CompositionConfig(hidden=32, dropout=0.0))
    model, record = train_composition_model(ds, ds, ["band_gap"], cfg, log=lambda m: None)
    assert record["curve"][-1]["val_nll"] < record["curve"][0]["val_nll"] / 4
    comps = model.sample(torch.full((40, 1), math.nan), temperature=0.5,
                         generator=torch.Generator().manual_seed(0))
    known = {(("Cl", 1), ("Na", 1)), (("O", 3), ("Sr", 1), ("Ti", 1))}
    from pymatgen.core import Element

    spelled = {tuple(sorted((Element.from_Z(z).symbol, n) for z, n in c.items())) for c in comps}
    assert spelled <= known and len(spelled) == 2
    # the condition is read: a large gap asks for the oxide
    oxide = model.sample(torch.full((20, 1), 3.0), temperature=0.5,
                         generator=torch.Generator().manual_seed(0))
    assert sum(8 in c for c in oxide) >= 18


def test_files_round_trip_and_damage_is_one_line(tmp_path):
    m = _model()
    save_composition_model(m, tmp_path, {"val_nll": 1.0}, {"denovo": "composition"})
    meta = json.loads((tmp_path / "composition.json").read_text())
    assert meta["sampling"] == {"denovo": "composition"} and meta["record"]["val_nll"] == 1.0
    back = load_composition_model(tmp_path)
    cond = torch.full((8, 1), math.nan)
    assert back.sample(cond, generator=torch.Generator().manual_seed(3)) == \
        m.sample(cond, generator=torch.Generator().manual_seed(3))
    (tmp_path / "composition.json").write_text("{not json")
    with pytest.raises(CompositionFileError, match="unusable composition model") as e:
        load_composition_model(tmp_path)
    assert "\n" not in str(e.value) and "composition.json" in str(e.value)
    save_composition_model(m, tmp_path)
    (tmp_path / "composition.safetensors").write_bytes(b"\0" * 64)
    with pytest.raises(CompositionFileError, match="composition.safetensors: unusable"):
        load_composition_model(tmp_path)
    (tmp_path / "composition.safetensors").unlink()
    with pytest.raises(CompositionFileError, match="not found"):
        load_composition_model(tmp_path)


def _ensemble(members: int = 2) -> CompositionEnsemble:
    cfg = CompositionConfig(hidden=16, layers=2, conditions=["band_gap"], cond_mean=[1.0],
                            cond_std=[2.0], members=members)
    torch.manual_seed(0)
    return CompositionEnsemble(cfg).eval()


def test_an_ensemble_of_copies_is_the_single_network():
    m = _model().eval()
    ens = CompositionEnsemble.of([m, m])
    assert ens.cfg.members == 2 and len(ens.members) == 2
    el, cnt, valid = encode([{8: 4, 26: 2, 3: 2}, {11: 1, 17: 1}])
    cond = m.normalise(torch.tensor([[0.5], [math.nan]]))
    assert torch.allclose(ens.nll(el, cnt, valid, cond), m.nll(el, cnt, valid, cond), atol=1e-5)
    c = torch.tensor([[2.5]] * 6 + [[math.nan]] * 6)
    for guidance in (1.0, 2.0):
        assert ens.sample(c, guidance=guidance, generator=torch.Generator().manual_seed(4)) == \
            m.sample(c, guidance=guidance, generator=torch.Generator().manual_seed(4))


def test_ensemble_nll_is_at_most_its_members_mean():
    ens = _ensemble(3)
    el, cnt, valid = encode([{8: 4, 26: 2, 3: 2}, {11: 1, 17: 1}, {6: 8}])
    cond = ens.normalise(torch.tensor([[0.5], [math.nan], [3.0]]))
    members = torch.stack([m.nll(el, cnt, valid, cond) for m in ens.members])
    assert (ens.nll(el, cnt, valid, cond) <= members.mean(0) + 1e-5).all()
    # it is a distribution over compositions that differs from each member's
    assert not torch.allclose(ens.nll(el, cnt, valid, cond), members[0])


def test_ensemble_samples_obey_the_constraints():
    ens = _ensemble(2)
    allowed = torch.zeros(94, dtype=torch.bool)
    allowed[[2, 25, 7]] = True
    comps = ens.sample(torch.full((32, 1), math.nan), allowed=allowed, temperature=0.9,
                       generator=torch.Generator().manual_seed(1))
    assert len(comps) == 32
    assert all(c and set(c) <= {3, 26, 8} and sum(c.values()) <= 20 for c in comps)


def test_ensemble_files_round_trip_in_float16(tmp_path):
    ens = _ensemble(2)
    save_composition_model(ens, tmp_path, {"val_nll": 1.0}, half=True)
    meta = json.loads((tmp_path / "composition.json").read_text())
    assert meta["config"]["members"] == 2 and meta["weights_dtype"] == "float16"
    back = load_composition_model(tmp_path)
    assert isinstance(back, CompositionEnsemble) and len(back.members) == 2
    assert back.members[1].gru.weight_hh_l0.dtype == torch.float32
    for a, b in zip(ens.state_dict().values(), back.state_dict().values()):
        assert torch.equal(a.half().float(), b) if a.is_floating_point() else torch.equal(a, b)
    el, cnt, valid = encode([{8: 4, 26: 2, 3: 2}])
    cond = ens.normalise(torch.tensor([[math.nan]]))
    assert torch.allclose(back.nll(el, cnt, valid, cond), ens.nll(el, cnt, valid, cond),
                          rtol=1e-2)
    # a member count that does not match the weights is a one-line file error
    meta["config"]["members"] = 3
    (tmp_path / "composition.json").write_text(json.dumps(meta))
    with pytest.raises(CompositionFileError, match="composition.safetensors: unusable"):
        load_composition_model(tmp_path)


def test_training_an_ensemble_records_each_member():
    from pymatgen.core import Lattice, Structure

    from matgen.crystal import CrystalBatch
    from matgen.data import CrystalDataset
    from matgen.training import CompositionTrainConfig, train_composition_model

    structs = [Structure(Lattice.cubic(4 + 0.01 * i), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3])
               for i in range(6)]
    structs += [Structure(Lattice.cubic(4.0), ["Cs", "Br"], [[0, 0, 0], [0.5] * 3])] * 6
    b = CrystalBatch.from_structures(structs)
    ds = CrystalDataset(b.atomic_numbers, b.frac_coords, b.lattice, b.num_atoms,
                        {"band_gap": torch.linspace(0, 3, 12, dtype=b.lattice.dtype)})
    cfg = CompositionTrainConfig(epochs=4, patience=4, batch_size=4, lr=1e-2, seed=3,
                                 model=CompositionConfig(hidden=16, members=2))
    model, record = train_composition_model(ds, ds, ["band_gap"], cfg, log=lambda m: None)
    assert isinstance(model, CompositionEnsemble) and len(model.members) == 2
    assert [m["seed"] for m in record["members"]] == [3, 4]
    assert len(record["best_epoch"]) == 2
    assert record["val_nll"] <= sum(m["val_nll"] for m in record["members"]) / 2 + 1e-3
    a, b2 = (dict(m.state_dict()) for m in model.members)
    assert not torch.equal(a["gru.weight_hh_l0"], b2["gru.weight_hh_l0"])  # two seeds


def test_finetuning_moves_the_model_towards_the_set_deterministically(caplog):
    import logging

    from matgen.training import CompositionTrainConfig, finetune_composition_model

    parent = _model(max_atoms=8)
    state = {k: v.clone() for k, v in parent.state_dict().items()}
    comps = [{11: 1, 17: 1}, {38: 1, 22: 1, 8: 3}] * 3
    comps += [{100: 1, 8: 1}, {11: 5, 17: 5}]  # Z 100 > num_types 94; 10 atoms > max_atoms 8
    cond = torch.tensor([[0.0], [3.0]] * 3 + [[1.0], [math.nan]])
    cfg = CompositionTrainConfig(batch_size=4, lr=5e-3, seed=3)

    def tuned():
        m = _model(max_atoms=8)
        torch.manual_seed(123)
        before = torch.get_rng_state()
        with caplog.at_level(logging.WARNING, logger="matgen.training"):
            m, rec = finetune_composition_model(m, comps, cond, steps=12, cfg=cfg)
        assert torch.equal(torch.get_rng_state(), before)  # the global RNG is left alone
        return m, rec

    model, rec = tuned()
    assert "2 of 8 composition(s) left out" in caplog.text
    assert rec["rows"] == 6 and rec["dropped"] == 2 and rec["steps"] == 12
    assert rec["batch_size"] == 4 and rec["lr"] == 5e-3
    assert rec["nll_after"] < rec["nll_before"] - 1.0
    assert not model.training
    assert any(not torch.equal(state[k], v) for k, v in model.state_dict().items())
    el, cnt, valid = encode(comps[:2])
    y = cond[:2]
    with torch.no_grad():
        assert (model.nll(el, cnt, valid, model.normalise(y))
                < parent.eval().nll(el, cnt, valid, parent.normalise(y))).all()
    again, rec2 = tuned()  # the seed fixes the batches, the dropping and the dropout
    assert rec2 == rec
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())


def test_finetuning_an_ensemble_tunes_each_member_and_an_empty_set_changes_nothing():
    from matgen.training import CompositionTrainConfig, finetune_composition_model

    ens = _ensemble(2)
    state = {k: v.clone() for k, v in ens.state_dict().items()}
    cfg = CompositionTrainConfig(batch_size=2, lr=5e-3, seed=0)
    _, rec = finetune_composition_model(ens, [{100: 2}], torch.zeros(1, 1), steps=3, cfg=cfg)
    assert rec["steps"] == 0 and rec["rows"] == 0 and rec["nll_after"] is None
    assert all(torch.equal(state[k], v) for k, v in ens.state_dict().items())
    comps = [{11: 1, 17: 1}, {3: 2, 8: 1}]
    _, rec = finetune_composition_model(ens, comps, torch.tensor([[0.0], [2.0]]), steps=5,
                                        cfg=cfg)
    assert rec["nll_after"] < rec["nll_before"]
    for m in ("members.0.", "members.1."):
        assert any(not torch.equal(state[k], v) for k, v in ens.state_dict().items()
                   if k.startswith(m))
