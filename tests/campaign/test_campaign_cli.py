"""`matgen campaign` commands (in-process engine; the Prefect path is tested in tests/flows)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from matgen.cli import app


def test_run_status_export_import_and_usage_errors(tmp_path, toy_csv):
    from _toy import write_toy_config

    runner = CliRunner()
    cfg = write_toy_config(tmp_path, toy_csv, name="cli", oracle="lab", rounds=1)
    res = runner.invoke(app, ["campaign", "run", "--config", str(cfg), "--no-prefect"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["campaign", "status", "--config", str(cfg), "--json"])
    assert res.exit_code == 0
    status = json.loads(res.output)
    assert status["rounds"][0]["status"] == "submitted"
    req = tmp_path / "work" / "outbox" / "round_000" / "request.csv"
    ids = [line.split(",")[0] for line in req.read_text().splitlines()[1:]]
    results = tmp_path / "results.csv"
    results.write_text("candidate_id,band_gap,e_above_hull\n"
                       + "".join(f"{i},2.0,0.0\n" for i in ids))
    res = runner.invoke(app, ["campaign", "import-results", "--config", str(cfg),
                              "--csv", str(results)])
    assert res.exit_code == 0 and f"accepted {len(ids)}" in res.output
    bad = tmp_path / "bad.csv"
    bad.write_text("candidate_id,band_gap\nx,abc\n")
    res = runner.invoke(app, ["campaign", "import-results", "--config", str(cfg),
                              "--csv", str(bad)])
    assert res.exit_code == 1 and "is not a number" in res.output
    res = runner.invoke(app, ["campaign", "run", "--config", str(cfg), "--no-prefect"])
    assert res.exit_code == 0 and "lab candidate list" in res.output
    res = runner.invoke(app, ["campaign", "export", "--config", str(cfg), "--out",
                              str(tmp_path / "x")])
    assert res.exit_code == 0
    assert (tmp_path / "x").exists() and len(list((tmp_path / "x").iterdir())) == 1
    res = runner.invoke(app, ["campaign", "status", "--config", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2 and "no such config" in res.output
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nobjectives: [{property: band_gap, goal: maximize}]\n"
                      "batch_size: 10\npool_size: 2\n")
    res = runner.invoke(app, ["campaign", "status", "--config", str(broken)])
    assert res.exit_code == 2 and "batch_size" in res.output


def test_status_export_without_state_are_errors_and_create_nothing(tmp_path, toy_csv):
    from _toy import write_toy_config

    cfg = write_toy_config(tmp_path, toy_csv, name="nostate")
    for cmd in (["export", "--out", str(tmp_path / "x")], ["status"], ["status", "--json"]):
        res = CliRunner().invoke(app, ["campaign", cmd[0], "--config", str(cfg), *cmd[1:]])
        assert res.exit_code == 1 and "no state yet" in res.output, res.output
        assert res.output.count("\n") == 1 and "Traceback" not in res.output
    assert not (tmp_path / "work").exists() and not (tmp_path / "x").exists()


def test_work_dir_is_relative_to_the_config_folder(tmp_path, toy_csv, monkeypatch):
    from _toy import write_toy_config

    (tmp_path / "cfgs").mkdir()
    cfg = write_toy_config(tmp_path / "cfgs", toy_csv, name="rel", rounds=1)
    cfg.write_text(cfg.read_text().replace(f"work_dir: {tmp_path / 'cfgs' / 'work'}",
                                           "work_dir: ../runs/{name}"))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    runner = CliRunner()
    res = runner.invoke(app, ["campaign", "run", "--config", str(cfg), "--no-prefect"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "runs" / "rel" / "state.db").exists()
    # progress without a terminal: the step under way, then the end
    assert "campaign rel, round 0: scoring, chunk 1/" in res.output
    assert "campaign rel: 8/8 steps (100%), done in" in res.output
    monkeypatch.chdir(tmp_path)  # another folder, a relative --config: the same state
    res = runner.invoke(app, ["campaign", "status", "--config", "cfgs/rel.yaml", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["rounds"][0]["status"] == "reported"
    assert not (tmp_path / "runs" / "campaigns").exists()
    res = runner.invoke(app, ["campaign", "run", "--config", str(cfg), "--no-prefect",
                              "--no-progress", "--rounds", "2"])
    assert res.exit_code == 0 and "campaign rel" not in res.output


def test_help_fits_80_columns_and_version_flag():
    import os

    env = {**os.environ, "COLUMNS": "80"}
    res = CliRunner().invoke(app, ["sample", "--help"], env=env)
    assert res.exit_code == 0
    assert "--compositions-from" in res.output and "…" not in res.output
    assert all(len(line) <= 80 for line in res.output.splitlines())
    assert "``" not in res.output
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.startswith("matgen ")


def test_serve_checks_its_schedule_and_warns_on_a_temporary_server(tmp_path, toy_csv,
                                                                   monkeypatch):
    from _toy import write_toy_config

    import matgen_flows.campaign as flows_campaign

    cfg = write_toy_config(tmp_path, toy_csv, name="served")
    runner = CliRunner()
    res = runner.invoke(app, ["campaign", "serve", "--config", str(cfg), "--cron", "0 2 * *"])
    assert res.exit_code == 2 and "is not a cron schedule" in res.output
    res = runner.invoke(app, ["campaign", "serve", "--config", str(cfg), "--cron", "0 2 * * *",
                              "--timezone", "Mars/Olympus"])
    assert res.exit_code == 2 and "not an IANA time zone" in res.output
    served = []
    monkeypatch.setattr(flows_campaign, "serve_campaign",
                        lambda *a, **k: served.append((a, k)))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    res = runner.invoke(app, ["campaign", "serve", "--config", str(cfg), "--cron", "0 2 * * *",
                              "--timezone", "Europe/Berlin"])
    assert res.exit_code == 0, res.output
    assert "temporary Prefect server" in res.output and "prefect server start" in res.output
    assert served[0][1] == {"timezone": "Europe/Berlin"}
