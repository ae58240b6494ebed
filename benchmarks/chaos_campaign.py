"""Chaos test of the campaign engine (issue 20): SIGKILL a multi-round campaign with the dataset
oracle at seeded random moments, resume it each time, and run several copies at once.

After every killed run the state store and the oracle's own log are checked:

- each candidate is submitted to the oracle at most once (one request id per candidate, at
  most one fresh answer; a request re-sent after a crash carries its recorded id and is
  answered from the oracle's journal, as a service with idempotency keys would);
- no label is lost or changed (every label seen before is still there, same value);
- round statuses only move forward;
- once a run completes, the whole state equals an uninterrupted run with the same seed, the
  model version of every round included (the scorer's learning state is saved after each
  round's update and loaded on resume).

Kill moments: the n-th "event" of a run (store transactions begin / before commit / after
commit, the oracle before its call and after its answer is journaled but before the labels
are written, the scorer's learning state written but not yet in place), n drawn from a seeded RNG, or a seeded random delay after the worker is ready.
Workers are forked from this process after the imports (a kill is a real SIGKILL of a separate
process; forking only saves the ~10 s import per run on a loaded 2-core machine).

usage: python benchmarks/chaos_campaign.py [--kills 36] [--concurrent 3] [--seed 0]
       [--out benchmarks/results/chaos_campaign.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import signal
import sys
import time
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path

warnings.filterwarnings("ignore")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "campaign"))

from _toy import write_toy_config, write_toy_csv

from matgen.campaign import STEPS, Campaign, DatasetOracle, build_scorer, load_config

ROUNDS, POOL, BATCH = 3, 12, 3


# ---------------------------------------------------------------------------------- worker
def _append(path: Path, line: str) -> None:
    with open(path, "a") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


class JournalOracle(DatasetOracle):
    """The dataset oracle as a service with idempotency keys: every request is logged before
    work starts, its answer journaled before it returns; a request id seen before is answered
    from the journal (``replay``), without new work. Rows without a request id (an engine
    that records none) are new requests every time."""

    def __init__(self, csv, props, log: Path, tick) -> None:
        super().__init__(csv, props)
        self.log, self.tick = log, tick

    def _journal(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        if self.log.exists():
            for line in self.log.read_text().splitlines():
                kind, rid, rest = line.split(" ", 2)
                if kind == "answer":
                    out.setdefault(rid, {}).update(json.loads(rest))
        return out

    def request(self, candidates, round_index):
        rid = candidates[0].get("request_id") if candidates else None
        if rid is not None:
            known = self._journal().get(rid)
            if known is not None and all(c["id"] in known for c in candidates):
                _append(self.log, f"replay {rid} {len(candidates)}")
                self.tick("oracle_replayed")
                return {c["id"]: known[c["id"]] for c in candidates}
        rid = rid or f"anon-{uuid.uuid4().hex[:10]}"
        self.tick("oracle_before")
        for c in candidates:
            _append(self.log, f"submit {rid} {c['id']}")
        out = super().request(candidates, round_index)
        _append(self.log, f"answer {rid} {json.dumps(out)}")
        self.tick("oracle_answered")  # answered and journaled, labels not yet written
        return out


def _worker(config: str, oracle_log: str, kill_at: int | str, ready: str,
            events_out: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    count = [0]

    def tick(where: str) -> None:
        count[0] += 1
        if count[0] == kill_at or where == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    cfg = load_config(config)
    scorer = build_scorer(cfg)
    save_state = scorer.save_learning_state

    def save_then_tick(folder):  # written in its temporary folder, not yet renamed
        save_state(folder)
        tick("scorer_state_written")

    scorer.save_learning_state = save_then_tick
    camp = Campaign(cfg, scorer=scorer,
                    oracle=JournalOracle(cfg.oracle.csv, cfg.property_names(), Path(oracle_log),
                                         tick))
    store = camp.store
    orig_tx = store.transaction

    @contextmanager
    def transaction():
        tick("tx_begin")
        with orig_tx() as conn:
            yield conn
            tick("tx_before_commit")
        tick("tx_after_commit")

    store.transaction = transaction
    Path(ready).touch()
    camp.run()
    Path(events_out).write_text(str(count[0]))
    store.dispose()


# ---------------------------------------------------------------------------------- checks
def _canonical(cfg_path: Path) -> dict:
    """The campaign's state without timestamps, request ids and leases."""
    camp = Campaign(load_config(cfg_path))
    st = camp.store
    try:
        rounds = [{k: r[k] for k in ("index", "status", "seed", "acquisition", "metrics",
                                     "model_version", "hull_version", "config_version")}
                  for r in st.rounds()]
        cands = [{k: c[k] for k in ("id", "round_index", "position", "source_id", "cif",
                                    "status", "reason", "scores", "selected",
                                    "selected_round", "rank", "acq_value")}
                 for c in sorted(st.candidates(), key=lambda c: c["id"])]
        subs = [{k: s[k] for k in ("candidate_id", "round_index", "oracle", "status", "detail")}
                for s in sorted(st.submissions(), key=lambda s: s["candidate_id"])]
        return {"rounds": rounds, "candidates": cands, "submissions": subs,
                "labels": st.labels()}
    finally:
        st.dispose()


def _oracle_counts(log: Path) -> tuple[dict[str, set[str]], dict[str, int], int]:
    """Per candidate: its request ids and fresh answers; and the number of replays."""
    rids: dict[str, set[str]] = {}
    answers: dict[str, int] = {}
    replays = 0
    if log.exists():
        for line in log.read_text().splitlines():
            kind, rid, rest = line.split(" ", 2)
            if kind == "submit":
                rids.setdefault(rest, set()).add(rid)
            elif kind == "answer":
                for cid in json.loads(rest):
                    answers[cid] = answers.get(cid, 0) + 1
            elif kind == "replay":
                replays += 1
    return rids, answers, replays


def _differences(a: dict, b: dict) -> list[str]:
    """``table.column`` names whose values differ between two canonical states."""
    out = set()
    for table, rows in a.items():
        if table == "labels":
            if rows != b[table]:
                out.add("labels")
            continue
        if len(rows) != len(b[table]):
            out.add(f"{table}.rows")
            continue
        for x, y in zip(rows, b[table], strict=True):
            out.update(f"{table}.{k}" for k in x if x[k] != y[k])
    return sorted(out)


class Checker:
    """Invariants between consecutive runs of one campaign."""

    def __init__(self) -> None:
        self.labels: dict[str, dict] = {}
        self.status: dict[int, int] = {}
        self.lost_or_changed = 0
        self.status_regressions = 0
        self.checks = 0

    def check(self, cfg_path: Path) -> dict:
        state = _canonical(cfg_path)
        self.checks += 1
        for cid, lab in self.labels.items():
            now = state["labels"].get(cid, {})
            for k, v in lab.items():
                if k not in now or now[k] != v:
                    self.lost_or_changed += 1
        self.labels = {c: dict(v) for c, v in state["labels"].items()}
        for r in state["rounds"]:
            i = STEPS.index(r["status"])
            if i < self.status.get(r["index"], 0):
                self.status_regressions += 1
            self.status[r["index"]] = i
        ids = [s["candidate_id"] for s in state["submissions"]]
        assert len(ids) == len(set(ids)), "duplicate submission rows"
        return state


# ---------------------------------------------------------------------------------- driver
def _start(ctx, config: Path, log: Path, kill_at: int, tmp: Path, tag: str):
    ready, events = tmp / f"ready.{tag}", tmp / f"events.{tag}"
    for p in (ready, events):
        p.unlink(missing_ok=True)
    proc = ctx.Process(target=_worker, args=(str(config), str(log), kill_at, str(ready),
                                            str(events)))
    proc.start()
    return proc, ready, events


def _run_one(ctx, config, log, tmp, kill_at=0, timer=None, tag="w") -> tuple[bool, int]:
    """One worker; returns (killed, events it counted when it finished)."""
    proc, ready, events = _start(ctx, config, log, kill_at, tmp, tag)
    if timer is not None:
        while not ready.exists() and proc.is_alive():
            time.sleep(0.01)
        proc.join(timer)
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    if proc.exitcode == -signal.SIGKILL:
        return True, 0
    if proc.exitcode != 0:
        raise RuntimeError(f"worker failed with exit code {proc.exitcode}")
    return False, int(events.read_text())


def chaos(kills: int, concurrent: int, seed: int, work: Path) -> dict:
    ctx = mp.get_context("fork")
    rng = random.Random(seed)
    csv = write_toy_csv(work / "toy.csv")
    t0 = time.perf_counter()
    ref_dir = work / "reference"
    ref_dir.mkdir(parents=True)
    ref_cfg = write_toy_config(ref_dir, csv, name="chaos", rounds=ROUNDS, pool=POOL,
                               batch=BATCH)
    tr = time.perf_counter()
    _, total_events = _run_one(ctx, ref_cfg, ref_dir / "oracle.log", ref_dir)
    ref_seconds = time.perf_counter() - tr
    reference = _canonical(ref_cfg)
    assert [r["status"] for r in reference["rounds"]] == ["reported"] * ROUNDS

    totals = {"kills": 0, "event_kills": 0, "timer_kills": 0, "after_answer_kills": 0, "resumes": 0, "runs": 0,
              "episodes": 0, "invariant_checks": 0, "double_submissions": 0,
              "double_answers": 0, "replayed_requests": 0, "lost_or_changed_labels": 0,
              "status_regressions": 0, "final_state_mismatches": 0,
              "final_state_mismatches_besides_model_version": 0}
    episodes = []
    while totals["kills"] < kills:
        ep = totals["episodes"]
        d = work / f"episode_{ep:02d}"
        d.mkdir()
        cfg = write_toy_config(d, csv, name="chaos", rounds=ROUNDS, pool=POOL, batch=BATCH)
        log, checker = d / "oracle.log", Checker()
        consumed, ep_kills = 0, 0
        while True:
            if totals["kills"] >= kills:
                kill_at, timer = 0, None  # the last run of the last episode completes
            elif (u := rng.random()) < 0.2:
                kill_at, timer = 0, rng.uniform(0.0, ref_seconds)
            elif u < 0.35:  # between the oracle's answer and the label write, on purpose
                kill_at, timer = "oracle_answered", None
            else:
                kill_at, timer = rng.randint(1, max(3, total_events - consumed)), None
            killed, _ = _run_one(ctx, cfg, log, d, kill_at, timer)
            totals["runs"] += 1
            checker.check(cfg)
            if not killed:
                break
            totals["kills"] += 1
            ep_kills += 1
            totals["resumes"] += 1
            if timer is not None:
                totals["timer_kills"] += 1
            elif isinstance(kill_at, str):
                totals["after_answer_kills"] += 1
            else:
                totals["event_kills"] += 1
                consumed += kill_at
        final = _canonical(cfg)
        rids, answers, replays = _oracle_counts(log)
        doubles = sorted(c for c, r in rids.items() if len(r) > 1)
        twice = sorted(c for c, n in answers.items() if n > 1)
        totals["double_submissions"] += len(doubles)
        totals["double_answers"] += len(twice)
        totals["replayed_requests"] += replays
        totals["lost_or_changed_labels"] += checker.lost_or_changed
        totals["status_regressions"] += checker.status_regressions
        totals["invariant_checks"] += checker.checks
        diff = _differences(final, reference)
        totals["final_state_mismatches"] += int(bool(diff))
        totals["final_state_mismatches_besides_model_version"] += int(
            bool(set(diff) - {"rounds.model_version"}))
        episodes.append({"kills": ep_kills, "double_submissions": doubles,
                         "double_answers": twice, "replays": replays,
                         "differences": diff})
        totals["episodes"] += 1

    # several runs of one campaign at once, one of them killed at a random moment
    d = work / "concurrent"
    d.mkdir()
    cfg = write_toy_config(d, csv, name="chaos", rounds=ROUNDS, pool=POOL, batch=BATCH)
    log, checker = d / "oracle.log", Checker()
    procs = [_start(ctx, cfg, log, 0, d, f"c{k}") for k in range(concurrent)]
    victim = procs[rng.randrange(concurrent)][0]
    time.sleep(rng.uniform(0.2, ref_seconds))
    if victim.is_alive():
        os.kill(victim.pid, signal.SIGKILL)
    for p, _, _ in procs:
        p.join()
    checker.check(cfg)
    codes = [p.exitcode for p, _, _ in procs]
    _run_one(ctx, cfg, log, d)  # finish whatever the killed one held
    checker.check(cfg)
    rids, answers, replays = _oracle_counts(log)
    conc = {"runs": concurrent, "exit_codes": codes,
            "double_submissions": sorted(c for c, r in rids.items() if len(r) > 1),
            "double_answers": sorted(c for c, n in answers.items() if n > 1),
            "replays": replays, "lost_or_changed_labels": checker.lost_or_changed,
            "status_regressions": checker.status_regressions,
            "differences": _differences(_canonical(cfg), reference)}
    return {
        "what": "SIGKILL chaos test of a campaign with the dataset oracle (issue 20)",
        "command": f"python benchmarks/chaos_campaign.py --kills {kills} "
                   f"--concurrent {concurrent} --seed {seed}",
        "campaign": {"rounds": ROUNDS, "pool_size": POOL, "batch_size": BATCH,
                     "oracle": "dataset (toy rock-salt pool, tests/campaign/_toy.py)",
                     "labels_in_reference": sum(len(v) for v in reference["labels"].values())},
        "seed": seed,
        "reference_run": {"events": total_events, "seconds": round(ref_seconds, 2)},
        **totals,
        "episodes_detail": episodes,
        "concurrent": conc,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=36)
    ap.add_argument("--concurrent", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        res = chaos(a.kills, a.concurrent, a.seed, a.work or Path(tmp))
    text = json.dumps(res, indent=2)
    if a.out:
        a.out.write_text(text + "\n")
    print(text)
    ok = (res["double_submissions"] == res["double_answers"] == res["lost_or_changed_labels"]
          == res["status_regressions"] == res["final_state_mismatches"] == 0
          and not res["concurrent"]["double_submissions"]
          and not res["concurrent"]["double_answers"]
          and not res["concurrent"]["differences"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
