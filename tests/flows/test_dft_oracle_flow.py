"""``oracle: {kind: dft}`` in the Prefect flow: one task per candidate (fake verifier, no GPAW)."""

from __future__ import annotations

import asyncio

from _fake_dft import FakeVerifier, dft_config
from _toy import write_toy_csv

from matgen_flows.campaign import campaign_flow, campaign_for


def test_each_candidate_is_its_own_prefect_task(tmp_path, monkeypatch):
    import pandas as pd
    from prefect.client.orchestration import get_client

    import matgen.dft

    monkeypatch.setattr(matgen.dft, "gpaw_available", lambda: True)
    df = pd.read_csv(write_toy_csv(tmp_path / "all.csv"))
    df[df.material_id.str.startswith(("toy-00", "toy-02"))].to_csv(tmp_path / "p.csv", index=False)
    path = dft_config(tmp_path, tmp_path / "p.csv", batch=3)
    fake = FakeVerifier()
    campaign_for(path).oracle._verifier = fake  # the process-wide campaign the tasks use
    out = campaign_flow(path, rounds=1)
    assert [r["status"] for r in out["rounds"]] == ["reported"]
    subs = campaign_for(path).store.submissions()
    assert len(subs) == 3 and sorted(fake.calls) == sorted(s["candidate_id"] for s in subs)

    async def task_names():
        async with get_client() as client:
            return [t.name for t in await client.read_task_runs()]

    names = [n for n in asyncio.run(task_names()) if n.startswith("dft_candidate")]
    assert len(names) == 3
