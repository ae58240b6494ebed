"""Config changes of an existing campaign and objectives vs components (issue 20, items 3-4),
plus the campaign CLI's one-line usage errors (items 8, 12, 13)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from matgen.campaign import (
    Campaign,
    CampaignConfigError,
    ConfigChangedError,
    check_config,
    load_config,
)
from matgen.cli import app


def _cli(*args):
    return CliRunner().invoke(app, ["campaign", *map(str, args)])


def _one_line_error(res, code: int, *needles: str) -> None:
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output and res.exception is None or isinstance(
        res.exception, SystemExit), res.output
    for n in needles:
        assert n in res.output, res.output


def test_a_changed_config_is_refused_with_a_diff_or_accepted_as_a_new_version(tmp_path,
                                                                             toy_csv):
    from _toy import write_toy_config

    path = write_toy_config(tmp_path, toy_csv, name="cc", rounds=1)
    assert _cli("run", "--config", path, "--no-prefect").exit_code == 0
    text = path.read_text()
    path.write_text(text.replace("pool_size: 12", "pool_size: 14").replace("seed: 3", "seed: 4"))
    res = _cli("run", "--config", path, "--no-prefect", "--rounds", 2)
    _one_line_error(res, 2, "campaign 'cc' was started with another config: pool_size: 12 -> "
                    "14; seed: 3 -> 4 (pass --accept-config-change")
    assert res.output.count("\n") == 1
    camp = Campaign(load_config(write_toy_config(tmp_path, toy_csv, name="cc", rounds=1)))
    assert len(camp.store.rounds()) == 1  # nothing ran with the new config
    path.write_text(text.replace("pool_size: 12", "pool_size: 14").replace("seed: 3", "seed: 4"))
    res = _cli("run", "--config", path, "--no-prefect", "--rounds", 2,
               "--accept-config-change")
    assert res.exit_code == 0, res.output
    camp = Campaign(load_config(path))  # the new config is now the campaign's: no flag needed
    rounds = camp.store.rounds()
    assert [r["config_version"] for r in rounds] == [1, 2]
    assert len(camp.store.candidates(1)) == 14 and len(camp.store.candidates(0)) == 12
    versions = camp.store.config_versions()
    assert [(v["version"], v["from_round"]) for v in versions] == [(1, 0), (2, 1)]
    assert versions[1]["changes"] == "pool_size: 12 -> 14; seed: 3 -> 4"
    assert versions[0]["config"]["pool_size"] == 12
    # operational settings (rounds, task runner, export) change freely
    path.write_text(path.read_text().replace("rounds: 1", "rounds: 5")
                    .replace("export_on_finish: true", "export_on_finish: false"))
    Campaign(load_config(path))
    # objectives count as a change too (API)
    path.write_text(path.read_text().replace("maximum: 0.05", "maximum: 0.08"))
    with pytest.raises(ConfigChangedError, match=r"objectives\[1\]\.maximum: 0.05 -> 0.08"):
        Campaign(load_config(path))


def test_objectives_are_checked_against_scorer_and_oracle_before_any_work(tmp_path, toy_csv):
    from _toy import write_toy_config

    path = write_toy_config(tmp_path, toy_csv, name="ob", rounds=1)
    path.write_text(path.read_text().replace("property: e_above_hull", "property: e_abov_hull"))
    res = _cli("run", "--config", path, "--no-prefect")
    _one_line_error(res, 2, "objective 'e_abov_hull': produced by neither the dataset scorer",
                    "(did you mean 'e_above_hull'?)")
    assert res.output.count("\n") == 1
    assert not (tmp_path / "work" / "outbox").exists()
    assert Campaign(load_config(path)).store.rounds() == []  # no round was started

    cfg = load_config(write_toy_config(tmp_path, toy_csv, name="ml", rounds=1))
    mlip = cfg.model_copy(update={"oracle": cfg.oracle.model_copy(update={"kind": "mlip"})})
    with pytest.raises(CampaignConfigError, match="objective 'band_gap': the mlip oracle does "
                       "not label it .*energy_per_atom"):
        check_config(mlip)
    with pytest.raises(CampaignConfigError):
        Campaign(mlip, accept_config_change=True).run()

    # the lab labels what oracle.properties declares; otherwise the scorer must predict it
    lab = write_toy_config(tmp_path, toy_csv, name="lb", oracle="lab", rounds=1)
    lab.write_text(lab.read_text().replace("property: band_gap", "property: ionic_cond"))
    with pytest.raises(CampaignConfigError, match="'ionic_cond'.*oracle.properties"):
        check_config(load_config(lab))
    lab.write_text(lab.read_text().replace("oracle: {kind: lab,",
                                           "oracle: {properties: [ionic_cond, e_above_hull], "
                                           "kind: lab,"))
    warnings = check_config(load_config(lab))
    assert warnings == [("objective 'ionic_cond': the dataset scorer (toy.csv) does not predict "
                        "it; selection learns it from oracle labels only")]


def test_shipped_configs_pass_the_objective_check():
    from pathlib import Path

    for p in sorted((Path(__file__).resolve().parents[2] / "configs" / "campaigns")
                    .glob("*.yaml")):
        assert check_config(load_config(p)) == [], p


def test_usage_and_data_errors_are_one_line(tmp_path, toy_csv):
    from _toy import write_toy_config

    path = write_toy_config(tmp_path, toy_csv, name="ue", rounds=1)
    assert _cli("run", "--config", path, "--no-prefect").exit_code == 0
    _one_line_error(_cli("export", "--config", path, "--out", tmp_path / "e", "--round", 99),
                    2, "campaign 'ue' has no round 99 (rounds: 0)")
    (tmp_path / "afile").write_text("x")
    _one_line_error(_cli("export", "--config", path, "--out", tmp_path / "afile"), 2,
                    "exists and is not a folder")
    _one_line_error(_cli("run", "--config", path, "--rounds", -1), 2,
                    "Invalid value for '--rounds'")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nobjectives: [{property: band_gap, goal: maximize}\n")
    res = _cli("status", "--config", broken)
    _one_line_error(res, 2, "broken.yaml: line 3: YAML syntax error")
    assert res.output.count("\n") == 1
    broken.write_text("- 1\n- 2\n")
    _one_line_error(_cli("status", "--config", broken), 2, "expected a mapping")
    broken.write_text("name: x\nobjectives: [{property: band_gap, goal: maximize}]\n"
                      "pool_size: -5\n")
    _one_line_error(_cli("status", "--config", broken), 2,
                    "pool_size: Input should be greater than 0")
    broken.write_text("name: x\nobjectives: [{property: band_gap, goal: maximize}]\n"
                      "generator: {guidance: -2}\n")
    _one_line_error(_cli("status", "--config", broken), 2,
                    "guidance: Input should be greater than or equal to 0")
    fresh = write_toy_config(tmp_path, toy_csv, name="fresh", rounds=1)
    fresh.write_text(fresh.read_text().replace(str(tmp_path / "work"), str(tmp_path / "w2")))
    res = _cli("import-results", "--config", fresh, "--csv", toy_csv)
    _one_line_error(res, 1, "campaign 'fresh' has no state yet")
    # a corrupted state database: one line naming the file and the way out
    db = tmp_path / "work" / "state.db"
    for suffix in ("-wal", "-shm"):
        (tmp_path / "work" / f"state.db{suffix}").unlink(missing_ok=True)
    db.write_bytes(b"this is not a database" * 100)
    for cmd in (["status"], ["run", "--no-prefect"]):
        res = _cli(*cmd, "--config", path)
        _one_line_error(res, 1, f"{db}: not a readable campaign state database",
                        "move it (and its -wal/-shm files) aside")
        assert res.output.count("\n") == 1


def _open_state_files(folder) -> list[str]:
    """This process's open files of state databases under ``folder``."""
    import os

    names = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if "state.db" in target and target.startswith(str(folder)):
            names.append(target)
    return names


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self/fd"), reason="needs Linux /proc")
def test_campaign_commands_run_in_process_leave_no_state_database_open(tmp_path, toy_csv):
    """Each command closes its state database connections when done. A connection left open
    in the process (as before 2026-12-06) kept the unlinked WAL, and closing it later (at a
    garbage collection) checkpointed the old pages into whatever file now had that name: the
    corrupted-database check above passed or failed by GC timing."""
    from _toy import write_toy_config

    path = write_toy_config(tmp_path, toy_csv, name="fd", rounds=1)
    for args in (["run", "--no-prefect"], ["status"], ["export", "--out", tmp_path / "e"],
                 ["export", "--out", tmp_path / "e", "--round", 99],
                 ["import-results", "--csv", toy_csv]):
        res = _cli(args[0], "--config", path, *args[1:])
        assert res.exit_code in (0, 1, 2), res.output
        assert _open_state_files(tmp_path) == [], args[0]
    path.write_text(path.read_text().replace("pool_size: 12", "pool_size: 14"))
    res = _cli("run", "--config", path, "--no-prefect", "--rounds", 2)  # a refused config
    assert res.exit_code == 2 and "another config" in res.output, res.output
    assert _open_state_files(tmp_path) == []
