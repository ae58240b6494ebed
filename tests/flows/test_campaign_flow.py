"""The campaign flows under prefect_test_harness (dataset stand-in generator and scorer)."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

from _toy import write_toy_config

from matgen.campaign import Campaign, load_config
from matgen_flows.campaign import campaign_flow, campaign_for, run_campaign


def _selected(cfg) -> list[list[str]]:
    camp = Campaign(cfg)
    return [[c["id"] for c in camp.selected(r["index"])] for r in camp.store.rounds()]


def test_flow_runs_resumes_publishes_artifacts_and_matches_engine(tmp_path, toy_csv, capfd,
                                                                   caplog):
    from prefect.client.orchestration import get_client

    (tmp_path / "a").mkdir()
    a = write_toy_config(tmp_path / "a", toy_csv, name="flowa")
    out = run_campaign(str(a), rounds=1, progress=True)
    assert [r["status"] for r in out["rounds"]] == ["reported"]
    # plain progress lines beside Prefect's logs (inside the flow they become its log lines)
    err = capfd.readouterr().err + caplog.text
    assert "campaign flowa, round 0: scoring: 2/8 steps" in err
    assert "campaign flowa: 8/8 steps (100%), done in" in err
    out = campaign_flow(str(a), rounds=2)  # resumes: round 0 is not redone
    assert [r["status"] for r in out["rounds"]] == ["reported", "reported"]
    export = Path(out["export"])
    assert len(list(csv.DictReader((export / "candidates.csv").open()))) == 6
    camp = campaign_for(str(a))
    assert len(camp.store.submissions()) == 6

    async def artifacts():
        async with get_client() as client:
            return await client.read_artifacts()

    keys = {x.key for x in asyncio.run(artifacts())}
    assert {"flowa-round-0-report", "flowa-round-1-report", "flowa-round-1-batch"} <= keys

    # the same campaign run in-process (no Prefect) selects the same batches
    (tmp_path / "b").mkdir()
    b = write_toy_config(tmp_path / "b", toy_csv, name="flowa")
    Campaign(load_config(b)).run()
    assert _selected(load_config(a)) == _selected(load_config(b))


def test_serve_builds_a_cron_deployment(tmp_path, toy_csv):
    from matgen_flows.campaign import build_deployment

    cfg = write_toy_config(tmp_path, toy_csv, name="served")
    dep = build_deployment(str(cfg), "0 2 * * *", rounds=5)
    assert dep.name == "served-scheduled"
    assert dep.parameters["max_new_rounds"] == 1 and dep.parameters["rounds"] == 5
    crons = [getattr(s.schedule, "cron", None) for s in dep.schedules]
    assert crons == ["0 2 * * *"]
    assert dep.schedules[0].schedule.timezone == "UTC"
    dep = build_deployment(str(cfg), "30 1 * * 1", timezone="Europe/Berlin")
    assert dep.schedules[0].schedule.timezone == "Europe/Berlin"


def test_scoring_cache_is_keyed_by_the_scorer_code_and_weights(tmp_path, toy_csv, monkeypatch):
    """Scored chunks are read back from Prefect's cache only for the same scorer: the same rows
    under another scorer key (other code, weights or learning state) are scored afresh. Before
    2026-12-06 the key was the task's inputs and source alone, so a demo rerun after a scorer
    change returned the old scores."""
    from prefect import flow

    import matgen_flows.campaign as fc

    path = str(write_toy_config(tmp_path, toy_csv, name="cachekey"))
    camp = fc.campaign_for(path)
    rows = [{"id": f"x{i}", **r} for i, r in enumerate(camp.generate_chunk(2, 0, {}))]
    digest = camp.cfg.digest()

    @flow
    def score_three(k1: str, k2: str) -> list[str]:
        states = [fc.score_chunk(path, digest, k, rows, 0, return_state=True)
                  for k in (k1, k1, k2)]
        return [s.name for s in states]

    assert score_three(f"A@{tmp_path.name}", f"B@{tmp_path.name}") == [
        "Completed", "Cached", "Completed"]
    key = fc.scorer_key(camp)
    assert key.startswith(f"{camp.scorer.model_version}@") and key.endswith(fc.code_fingerprint())
    monkeypatch.setattr(fc, "code_fingerprint", lambda: "0" * 16)
    assert fc.scorer_key(camp) != key
