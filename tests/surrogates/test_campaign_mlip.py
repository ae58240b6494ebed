"""Campaign side of the MLIP choice and of the suspect flag: ``scorer.mlip`` / ``oracle.mlip``
reach the components, and an unlabelled suspect never counts as stable in a round's metrics."""

from __future__ import annotations

from types import SimpleNamespace

from pymatgen.core import Lattice, Structure

from matgen.campaign._config import CampaignConfig
from matgen.campaign._engine import Campaign, build_oracle, build_scorer, is_suspect_candidate


def _cfg(**kw) -> CampaignConfig:
    return CampaignConfig(name="t", objectives=[{"property": "e_above_hull", "maximum": 0.1}],
                          **kw)


def test_scorer_and_oracle_take_the_configured_mlip():
    cfg = _cfg(scorer={"mlip": "sevennet"}, oracle={"kind": "mlip", "mlip": "sevennet"})
    scorer = build_scorer(cfg)
    assert scorer.mlip_name == "sevennet"
    assert scorer.model_version.startswith("sevennet=7net-l3i5")  # versions name the checkpoint
    oracle = build_oracle(cfg)
    assert oracle.mlip == "sevennet" and oracle.name.startswith("mlip:sevennet=7net-l3i5:")
    for name in ("chgnet", "sevennet-0"):
        cfg = _cfg(scorer={"mlip": name}, oracle={"kind": "mlip", "mlip": name})
        assert build_scorer(cfg).mlip_name == name and build_oracle(cfg).mlip == name
    assert build_scorer(_cfg(scorer={"mlip": "sevennet-0"})).model_version.startswith(
        "sevennet-0=7net-0")


def test_a_resumed_scorer_records_the_mlip_that_scores_now(tmp_path):
    """A learning state saved when ``sevennet`` meant SevenNet-0 (version ``sevennet+...``)
    resumes under today's name: later rounds say SevenNet-l3i5 scored them."""
    scorer = build_scorer(_cfg(scorer={"mlip": "sevennet"}))
    scorer.updates, scorer.model_version = 2, "sevennet+" + scorer.model_version.split("+", 1)[1]
    scorer.model_version += "+al2"
    scorer.save_learning_state(tmp_path)
    fresh = build_scorer(_cfg(scorer={"mlip": "sevennet"}))
    fresh.load_learning_state(tmp_path)
    assert fresh.updates == 2
    assert fresh.model_version.startswith("sevennet=7net-l3i5+")
    assert fresh.model_version.endswith("+al2")


def _row(cid: str, ehull: float, suspect: float | None = None) -> dict:
    s = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    sc = {"e_above_hull": ehull}
    if suspect is not None:
        sc["suspect"] = suspect
    return {"id": cid, "reduced_formula": f"NaCl{cid}", "cif": s.to(fmt="cif"),
            "spacegroup": "Pm-3m", "scores": sc, "status": "scored"}


def test_unlabelled_suspects_are_not_counted_stable():
    batch = [_row("a", -0.3, 1.0), _row("b", -0.2), _row("c", 0.02, 0.0), _row("d", -0.4, 1.0)]
    assert [is_suspect_candidate(c) for c in batch] == [True, True, False, True]
    labels = {"d": {"e_above_hull": 0.05}}  # the oracle vouched for d only
    cfg = _cfg()
    stub = SimpleNamespace(
        cfg=cfg,
        selected=lambda index: batch,
        store=SimpleNamespace(labels=lambda: labels, candidates=lambda index=None: batch),
        is_hit=lambda lab: lab.get("e_above_hull") is not None and lab["e_above_hull"] <= 0.1,
    )
    m = Campaign.metrics(stub, 0)
    assert m["suspects"] == 3 and m["suspects_unlabelled"] == 2
    # stable: c by its (non-suspect) score, d by its oracle label; a and b are not vouched for
    assert m["stability_synthesizability"]["stable_fraction"] == 0.5
    assert m["hits"] == 1 and m["cumulative_hits"] == 1


def test_every_default_mlip_is_the_one_default():
    import inspect

    from matgen.cli.score import score
    from matgen.surrogates._mlip import DEFAULT_MLIP

    cfg = _cfg()
    assert cfg.scorer.mlip == cfg.oracle.mlip == DEFAULT_MLIP
    assert inspect.signature(score).parameters["mlip"].default == DEFAULT_MLIP


def test_every_mlip_name_is_offered_and_described():
    """Config, CLI help and campaign reports know each name of ``load_mlip``."""
    from typing import get_args

    from matgen.campaign._config import OracleConfig, ScorerConfig
    from matgen.campaign._judges import judge_text
    from matgen.cli.score import MlipOpt
    from matgen.surrogates._mlip import MLIP_NAMES

    for model in (ScorerConfig, OracleConfig):
        assert set(get_args(model.model_fields["mlip"].annotation)) == set(MLIP_NAMES)
    help_text = get_args(MlipOpt)[1].help
    assert "sevennet (SevenNet-l3i5; default" in help_text and "sevennet-0 (SevenNet-0" in help_text
    names = {judge_text({"scorer": {"mlip": m}})["scorer"].split(" MLIP")[0] for m in MLIP_NAMES}
    assert names == {"CHGNet", "SevenNet-l3i5", "SevenNet-0"}
