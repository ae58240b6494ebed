"""`matgen campaign` commands: run, serve, status, export, import-results."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from matgen.cli._app import MatgenTyper, app, fail

# Prefect's server would otherwise send usage telemetry from `campaign run` / `serve`
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

campaign_app = MatgenTyper(
    help="Closed-loop discovery campaigns (Prefect flows over a crash-safe state store).",
    no_args_is_help=True,
)
app.add_typer(campaign_app, name="campaign")

ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="campaign YAML (configs/campaigns/NAME.yaml)")
]


def _load(config: Path):
    from pydantic import ValidationError

    from matgen.campaign import ConfigError, load_config

    if not config.exists():
        fail(f"no such config file: {config}", 2)
    try:
        return load_config(config)
    except ConfigError as exc:
        fail(str(exc), 2)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"])
            typer.echo(f"error: {config}: {loc}: {err['msg']}", err=True)
        raise typer.Exit(2) from None


@contextmanager
def _store_errors():
    """A state database that cannot be read: one line naming it (exit 1), no traceback."""
    from sqlalchemy.exc import DatabaseError

    from matgen.campaign import StoreError

    try:
        yield
    except StoreError as exc:
        fail(str(exc), 1)
    except DatabaseError as exc:
        why = str(getattr(exc, "orig", exc)).splitlines()[0]
        fail(
            f"state database: {why} (move the campaign's state.db aside to start "
            "afresh, or restore a backup)",
            1,
        )


def _require_state(cfg, config: Path, what: str) -> None:
    """A campaign that has not run yet: one line (exit 1) before anything opens, so no empty
    state database is created."""
    db = cfg.work_path() / "state.db"
    if cfg.state_url or db.exists():
        return
    fail(
        f"campaign {cfg.name!r} has no state yet ({db}; work_dir is relative to "
        f"{config.name}'s folder); {what}: run it first with matgen campaign run "
        f"--config {config}",
        1,
    )


@contextmanager
def _opened(cfg, accept_config_change: bool = False):
    """The campaign of ``cfg``: a changed config is refused (exit 2) unless accepted. Its
    state database connections are closed when the command is done with it (a command run
    in-process, as the Python API or a test does, leaves none behind)."""
    from matgen.campaign import Campaign, ConfigChangedError

    try:
        camp = Campaign(cfg, accept_config_change=accept_config_change)
    except ConfigChangedError as exc:
        fail(str(exc), 2)
    with camp.store:
        yield camp


def _state(cfg):
    """The campaign's state store alone (status, export); closed at the end of a ``with``."""
    from matgen.campaign import CampaignStore

    return CampaignStore(cfg.database_url(), cfg.name, cfg.model_dump(mode="json"))


AcceptOpt = Annotated[
    bool,
    typer.Option(
        "--accept-config-change",
        help="apply a changed config from the next round on (recorded as a new "
        "config version) instead of refusing it",
    ),
]


@campaign_app.command("run")
def run(
    config: ConfigOpt,
    rounds: Annotated[
        int | None, typer.Option("--rounds", min=0, help="total rounds (default: config)")
    ] = None,
    export_dir: Annotated[
        Path | None, typer.Option("--export-dir", help="lab hand-off folder at the end")
    ] = None,
    prefect: Annotated[
        bool,
        typer.Option(
            "--prefect/--no-prefect", help="run as a Prefect flow (default) or in-process"
        ),
    ] = True,
    accept_config_change: AcceptOpt = False,
    progress: Annotated[
        bool,
        typer.Option(
            help="Progress on stderr: the step under way and a line every 20 s (--no-prefect: "
            "a bar on a terminal), beside Prefect's task logs."
        ),
    ] = True,
) -> None:
    """Run the campaign (resumes where it stopped).

    With Prefect (the default) the run is also shown in the Prefect UI when PREFECT_API_URL
    points at a server (prefect server start); otherwise on a temporary server that stops
    with the run.
    """
    from matgen.campaign import CampaignConfigError, MissingModelError, export_campaign

    cfg = _load(config)
    if export_dir is not None and export_dir.exists() and not export_dir.is_dir():
        fail(f"--export-dir {export_dir} exists and is not a folder", 2)
    with _store_errors(), _opened(cfg, accept_config_change) as camp:
        try:
            camp.check()  # objectives vs scorer and oracle, before any work
        except CampaignConfigError as exc:
            for p in exc.problems:
                typer.echo(f"error: {config}: {p}", err=True)
            raise typer.Exit(2) from None
        # a loaded 2-core laptop can take longer than Prefect's 20 s default to start its server
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
        try:
            if prefect:
                run_campaign = _flows().run_campaign

                _where_to_watch(
                    "Prefect: a temporary server for this run (no UI to follow it; for one: "
                    f"prefect server start, then export PREFECT_API_URL={_LOCAL_API})"
                )
                out = run_campaign(
                    str(config),
                    rounds=rounds,
                    export_dir=str(export_dir) if export_dir else None,
                    progress=progress,
                )
            else:
                rows = camp.run(rounds, progress=progress)
                out = {"rounds": rows}
                total = rounds if rounds is not None else cfg.rounds
                if cfg.export_on_finish and camp.next_round() >= total:
                    out["export"] = str(
                        export_campaign(
                            camp.store,
                            export_dir or cfg.work_path() / "exports",
                            cfg.property_names(),
                        )
                    )
        except MissingModelError as exc:
            fail(str(exc), 1)
    _print_rounds(out["rounds"])
    if out.get("export"):
        typer.echo(f"lab candidate list: {Path(out['export']) / 'candidates.csv'}")


def _print_rounds(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table("round", "status", "candidates", "scored", "selected", "labelled", "hits", "alerts")
    for r in rows:
        m = r.get("metrics") or {}
        t.add_row(
            str(r["round"]),
            r["status"],
            str(r["candidates"]),
            str(r["scored"]),
            str(r["selected"]),
            str(r["labelled"]),
            str(m.get("hits", "")),
            "; ".join(m.get("alerts", [])),
        )
    Console().print(t)


@campaign_app.command("serve")
def serve(
    config: ConfigOpt,
    cron: Annotated[
        str, typer.Option("--cron", help='cron schedule, e.g. "0 2 * * *" (02:00 every day)')
    ],
    rounds: Annotated[
        int | None,
        typer.Option(
            "--rounds",
            min=0,
            help="total rounds; later scheduled runs do nothing (default: the config's rounds)",
        ),
    ] = None,
    timezone: Annotated[
        str, typer.Option("--timezone", help="IANA time zone of --cron, e.g. Europe/Berlin")
    ] = "UTC",
) -> None:
    """Serve a scheduled deployment (one round per scheduled run) until interrupted.

    Start a Prefect server first (prefect server start) and point PREFECT_API_URL at it: the
    schedule and its runs live on that server, where the UI shows them. Without one, serve
    runs on a temporary server that forgets the schedule when it stops.
    """
    from matgen.campaign import CampaignConfigError

    try:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        fail(
            f"--timezone {timezone!r} is not an IANA time zone (e.g. UTC, "
            "Europe/Berlin, America/New_York)",
            2,
        )
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=cron, timezone=timezone)
    except ValueError:
        fail(
            f"--cron {cron!r} is not a cron schedule (five fields: minute hour "
            'day-of-month month day-of-week, e.g. "0 2 * * *")',
            2,
        )
    cfg = _load(config)
    with _store_errors(), _opened(cfg) as camp:
        try:
            camp.check()
        except CampaignConfigError as exc:
            for p in exc.problems:
                typer.echo(f"error: {config}: {p}", err=True)
            raise typer.Exit(2) from None
    serve_campaign = _flows().serve_campaign

    _where_to_watch(
        "warning: no PREFECT_API_URL: serving on a temporary Prefect server; the schedule "
        "lasts only while this command runs and no UI shows it. For a lasting schedule: "
        f"prefect server start, then export PREFECT_API_URL={_LOCAL_API}"
    )
    serve_campaign(str(config), cron, rounds, timezone=timezone)


def _flows():
    """The Prefect flows (the flows/ folder, installed as matgen_flows)."""
    try:
        import matgen_flows.campaign
    except ModuleNotFoundError as exc:
        if exc.name != "matgen_flows":
            raise
        fail(
            "matgen_flows (the flows/ folder) is not installed: an install from "
            "before it was renamed; reinstall matgen (pip install -e . in the "
            "repository, or bash scripts/setup.sh), or use --no-prefect",
            2,
        )
    return matgen_flows.campaign


#: The API of ``prefect server start`` on this machine (its default port).
_LOCAL_API = "http://127.0.0.1:4200/api"


def _where_to_watch(temporary: str) -> None:
    """Say where the Prefect UI shows the runs (stderr); ``temporary`` when there is no server
    (no PREFECT_API_URL: Prefect starts a temporary one that stops with the command)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    api = PREFECT_API_URL.value()
    if not api:
        typer.echo(temporary, err=True)
        return
    ui = PREFECT_UI_URL.value() or api.removesuffix("/api")
    typer.echo(f"Prefect: follow the runs at {ui}/runs", err=True)


@campaign_app.command("status")
def status(
    config: ConfigOpt,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Show the rounds of a campaign and their metrics."""
    cfg = _load(config)
    _require_state(cfg, config, "no status to show")
    with _store_errors(), _state(cfg) as store:
        summary = store.summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
    else:
        typer.echo(f"campaign {summary['campaign']} ({summary['url']})")
        _print_rounds(summary["rounds"])


@campaign_app.command("export")
def export(
    config: ConfigOpt,
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="a new folder <name>_<all|roundNNN>_<UTC stamp> is created inside"
        ),
    ],
    round_index: Annotated[
        int | None, typer.Option("--round", min=0, help="one round (default: all)")
    ] = None,
) -> None:
    """Write the lab hand-off: merit-ranked CSV with a column dictionary, symmetrised CIFs
    with score sidecars, HTML report (a new folder each time; see the README)."""
    from matgen.campaign import export_campaign

    cfg = _load(config)
    if out.exists() and not out.is_dir():
        fail(f"--out {out} exists and is not a folder (a new folder is made inside it)", 2)
    _require_state(cfg, config, "nothing to export")
    with _store_errors(), _state(cfg) as store:
        have = [r["index"] for r in store.rounds()]
        if not store.candidates(selected=True):
            fail(
                f"campaign {cfg.name!r} has selected no candidates yet (rounds: "
                f"{', '.join(map(str, have)) or 'none'}); nothing to export",
                2,
            )
        if round_index is not None and round_index not in have:
            fail(
                f"campaign {cfg.name!r} has no round {round_index} (rounds: "
                f"{', '.join(map(str, have)) or 'none yet'})",
                2,
            )
        folder = export_campaign(store, out, cfg.property_names(), round_index)
    typer.echo(str(folder))


@campaign_app.command("import-results")
def import_results(
    config: ConfigOpt,
    csv: Annotated[
        Path, typer.Option("--csv", help="results CSV: candidate_id + property columns")
    ],
    correct: Annotated[
        bool,
        typer.Option(
            "--correct",
            help="replace labels that differ from the stored ones "
            "(each change is kept in the label history)",
        ),
    ] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="why (stored with each corrected label)")
    ] = None,
    accept_config_change: AcceptOpt = False,
) -> None:
    """Import lab results; the waiting round resumes on the next matgen campaign run.

    Every row needs at least one finite property value for a candidate sent to the lab; each
    rejected row is named with its reason (exit 1). Rows already imported with the same
    values are left unchanged, so a fixed file can be imported again.
    """
    from matgen.campaign import ResultsFileError

    cfg = _load(config)
    if not csv.exists():
        fail(f"no such file: {csv}", 2)
    if csv.is_dir():
        fail(f"--csv {csv} is a folder, not a CSV file", 2)
    _require_state(cfg, config, "no results to import into")
    with _store_errors(), _opened(cfg, accept_config_change) as camp:
        try:
            res = camp.import_results(str(csv), correct=correct, reason=reason)
        except ResultsFileError as exc:
            fail(str(exc), 1)
    for e in res.errors:
        typer.echo(f"error: {e}", err=True)
    extra = "".join(
        f", {n} {what}"
        for n, what in (
            (res.filled, "filled in"),
            (res.corrected, "corrected"),
            (res.unchanged, "unchanged"),
        )
        if n
    )
    typer.echo(f"accepted {res.accepted} rows{extra}, rejected {res.rejected}")
    if res.rejected:
        raise typer.Exit(1)
