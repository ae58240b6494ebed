"""Growing a trained dense denoiser deeper (``--init`` from a checkpoint with fewer layers):
the appended message-passing blocks start as the identity, so the grown network computes what
the checkpoint did; every trained tensor loads unchanged; shrinking stays a mismatch."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from matgen.models import DenoiserConfig, build_denoiser
from matgen.testing import random_crystals
from matgen.training import load_init_weights
from matgen.training._components import InitMismatchError

TINY = DenoiserConfig(arch="dense", hidden=32, layers=2, num_freqs=4)


def _saved(tmp_path, layers: int, seed: int = 0):
    torch.manual_seed(seed)
    model = build_denoiser(TINY.model_copy(update={"layers": layers}))
    folder = tmp_path / f"l{layers}"
    folder.mkdir()
    save_file(model.state_dict(), str(folder / "model.safetensors"))
    return model, folder


def test_grown_blocks_start_as_the_identity_and_then_train(tmp_path):
    shallow, folder = _saved(tmp_path, 2)
    torch.manual_seed(1)  # other random weights everywhere before the load
    deep = build_denoiser(TINY.model_copy(update={"layers": 4}))
    missing, skipped = load_init_weights(deep, folder)
    assert skipped == [] and missing and {k.split(".")[1] for k in missing} == {"2", "3"}
    assert all(k.startswith("blocks.") for k in missing)
    state = deep.state_dict()
    for k, v in shallow.state_dict().items():
        assert torch.equal(state[k], v), k
    # the zeroed layer still receives gradient: the new blocks learn
    _same_outputs_then_learns(shallow, deep, [deep.blocks[3].node[-1].weight])


def _same_outputs_then_learns(parent, grown, new_zeroed) -> None:
    """``grown`` (loaded from ``parent``'s checkpoint) computes what ``parent`` does, and the
    zero-initialised tensors ``new_zeroed`` get gradient in training."""
    batch = random_crystals([1, 4, 9], torch.Generator().manual_seed(2), dtype=torch.float32)
    t = torch.tensor([0.2, 0.5, 0.9])
    a, b = parent.eval()(batch, t), grown.eval()(batch, t)
    for x, y in ((a.coord, b.coord), (a.lattice, b.lattice), (a.type_logits, b.type_logits)):
        assert torch.allclose(x, y, atol=1e-6)
    grown.train()
    out = grown(batch, t)
    (out.coord.square().sum() + out.lattice.square().sum()).backward()
    for p in new_zeroed:
        assert p.grad.abs().sum() > 0


def test_pair_branches_added_by_init_start_at_zero_and_then_train(tmp_path):
    """model.distance_rbf and model.edge_update on a checkpoint without them: their tensors
    are the only new ones, the network computes the same, and they learn."""
    plain, folder = _saved(tmp_path, 2, seed=3)
    torch.manual_seed(4)
    pairs = build_denoiser(TINY.model_copy(update={"distance_rbf": 16, "edge_update": True}))
    missing, skipped = load_init_weights(pairs, folder)
    assert skipped == [] and missing
    assert all(k.startswith("dist_edge.") or ".edge_out." in k for k in missing), missing
    _same_outputs_then_learns(plain, pairs, [pairs.dist_edge[-1].weight,
                                             pairs.blocks[0].edge_out[-1].weight])


def test_a_shallower_or_wider_model_is_still_a_mismatch(tmp_path):
    _, folder = _saved(tmp_path, 3)
    shallow = build_denoiser(TINY)
    with pytest.raises(InitMismatchError, match="blocks.2"):
        load_init_weights(shallow, folder)
    wider = build_denoiser(TINY.model_copy(update={"layers": 4, "hidden": 48}))
    with pytest.raises(InitMismatchError, match="does not fit"):
        load_init_weights(wider, folder)
