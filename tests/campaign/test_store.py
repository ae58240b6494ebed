"""State store: step machine, atomic transactions, unique submissions."""

from __future__ import annotations

import pytest

from matgen.campaign import CampaignStore, StepConflict


def _row(i: int) -> dict:
    return {
        "id": f"c{i}",
        "round_index": 0,
        "position": i,
        "formula": "NaCl",
        "reduced_formula": "NaCl",
        "cif": "x",
        "status": "generated",
    }


def test_steps_advance_in_order_only(tmp_path):
    st = CampaignStore(f"sqlite:///{tmp_path / 's.db'}", "c")
    st.ensure_round(0, seed=1)
    st.ensure_round(0, seed=99)  # idempotent: the first seed stays
    assert st.round(0)["seed"] == 1
    with pytest.raises(StepConflict), st.transaction() as conn:
        st.advance(conn, 0, "deduped")  # cannot skip 'generated'
    with st.transaction() as conn:
        st.advance(conn, 0, "generated")
    with pytest.raises(StepConflict), st.transaction() as conn:
        st.advance(conn, 0, "generated")  # a step commits once
    assert st.status_reached(0, "generated") and not st.status_reached(0, "deduped")


def test_a_failed_step_leaves_nothing_behind(tmp_path):
    st = CampaignStore(f"sqlite:///{tmp_path / 's.db'}", "c")
    st.ensure_round(0, seed=1)
    with pytest.raises(RuntimeError), st.transaction() as conn:
        st.add_candidates(conn, [_row(i) for i in range(3)])
        st.advance(conn, 0, "generated")
        raise RuntimeError("crash in the middle of the step")
    assert st.candidates(0) == [] and st.round(0)["status"] == "started"


def test_candidates_are_typed_rows_that_still_read_like_dicts(tmp_path):
    from matgen.campaign import CandidateRow

    st = CampaignStore(f"sqlite:///{tmp_path / 's.db'}", "c")
    st.ensure_round(0, seed=1)
    with st.transaction() as conn:
        st.add_candidates(conn, [_row(i) for i in range(2)])
        st.update_candidate(conn, "c1", status="scored", scores={"band_gap": 1.5})
    a, b = st.candidates(0)
    assert isinstance(a, CandidateRow) and (a.id, a.position, a.selected) == ("c0", 0, False)
    assert b.scores == {"band_gap": 1.5} and b["scores"] is b.scores
    assert a.get("scores") is None and a.get("no such column", 7) == 7 and "cif" in a
    assert {**b, "rank": 3}["rank"] == 3 and dict(b)["status"] == "scored"
    with pytest.raises(KeyError):
        a["no such column"]
    assert [c.id for c in st.candidates(status="scored")] == ["c1"]


def test_submissions_are_unique_per_candidate(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    st = CampaignStore(url, "c")
    st.ensure_round(0, seed=1)
    with st.transaction() as conn:
        st.add_candidates(conn, [_row(i) for i in range(3)])
    with st.transaction() as conn:
        assert st.record_submissions(conn, ["c0", "c1"], 0, "o") == 2
    with st.transaction() as conn:
        assert st.record_submissions(conn, ["c1", "c2"], 0, "o") == 1
    from sqlalchemy.exc import IntegrityError

    from matgen.campaign._store import submissions

    with pytest.raises(IntegrityError), st.transaction() as conn:  # the DB itself refuses
        conn.execute(
            submissions.insert().values(
                candidate_id="c0",
                campaign_id=st.campaign_id,
                round_index=0,
                oracle="o",
                status="pending",
                created_at=st.round(0)["started_at"],
                updated_at=st.round(0)["started_at"],
            )
        )
    assert sorted(s["candidate_id"] for s in CampaignStore(url, "c").submissions()) == [
        "c0",
        "c1",
        "c2",
    ]


def test_two_workers_racing_on_a_step_commit_it_once(toy_config):
    from matgen.campaign import Campaign, load_config

    cfg = load_config(toy_config)
    a, b = Campaign(cfg), Campaign(cfg)
    a.store.ensure_round(0, cfg.round_seed(0))
    chunks = [a.generate_chunk(n, seed, {}) for _, n, seed in a.chunk_plan(0)]
    a.commit_generated(0, chunks)
    b.commit_generated(0, chunks)  # the loser rolls back, no error, nothing written twice
    assert len(a.store.candidates(0)) == cfg.pool_size
    a.dedup(0)
    plan = a.score_plan(0)
    scores = [a.score_chunk(rows, 1) for rows in plan]
    a.commit_scores(0, plan, scores)
    b.commit_scores(0, plan, scores)
    assert a.status(0) == "scored"
