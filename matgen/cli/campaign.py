"""`matgen campaign` commands: run, serve, status, export, import-results."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from matgen.cli._app import app

campaign_app = typer.Typer(
    help="Closed-loop discovery campaigns (Prefect flows over a crash-safe state store).",
    no_args_is_help=True,
)
app.add_typer(campaign_app, name="campaign")

ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="campaign YAML (configs/campaigns/NAME.yaml)")
]


def _load(config: Path):
    from pydantic import ValidationError

    from matgen.campaign import load_config

    if not config.exists():
        typer.echo(f"error: no such config file: {config}", err=True)
        raise typer.Exit(2)
    try:
        return load_config(config)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"])
            typer.echo(f"error: {config}: {loc}: {err['msg']}", err=True)
        raise typer.Exit(2) from None


@campaign_app.command("run")
def run(
    config: ConfigOpt,
    rounds: Annotated[
        int | None, typer.Option("--rounds", help="total rounds (default: config)")
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
) -> None:
    """Run the campaign (resumes where it stopped)."""
    from matgen.campaign import Campaign, MissingModelError, export_campaign

    cfg = _load(config)
    # a loaded 2-core laptop can take longer than Prefect's 20 s default to start its server
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    try:
        if prefect:
            from flows.campaign import run_campaign

            out = run_campaign(
                str(config), rounds=rounds, export_dir=str(export_dir) if export_dir else None
            )
        else:
            camp = Campaign(cfg)
            rows = camp.run(rounds)
            out = {"rounds": rows}
            total = rounds if rounds is not None else cfg.rounds
            if cfg.export_on_finish and camp.next_round() >= total:
                out["export"] = str(
                    export_campaign(
                        camp.store, export_dir or cfg.work_path() / "exports", cfg.property_names()
                    )
                )
    except MissingModelError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
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
    cron: Annotated[str, typer.Option("--cron", help='cron schedule, e.g. "0 2 * * *"')],
    rounds: Annotated[int | None, typer.Option("--rounds")] = None,
) -> None:
    """Serve a scheduled deployment (one round per scheduled run)."""
    _load(config)
    from flows.campaign import serve_campaign

    serve_campaign(str(config), cron, rounds)


@campaign_app.command("status")
def status(
    config: ConfigOpt,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Show the rounds of a campaign and their metrics."""
    from matgen.campaign import CampaignStore

    cfg = _load(config)
    store = CampaignStore(cfg.database_url(), cfg.name, cfg.model_dump(mode="json"))
    summary = store.summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
    else:
        typer.echo(f"campaign {summary['campaign']} ({summary['url']})")
        _print_rounds(summary["rounds"])


@campaign_app.command("export")
def export(
    config: ConfigOpt,
    out: Annotated[Path, typer.Option("--out", help="a new folder is created inside")],
    round_index: Annotated[
        int | None, typer.Option("--round", help="one round (default: all)")
    ] = None,
) -> None:
    """Write the lab hand-off: ranked CSV, CIFs, HTML report (a new folder each time)."""
    from matgen.campaign import CampaignStore, export_campaign

    cfg = _load(config)
    store = CampaignStore(cfg.database_url(), cfg.name, cfg.model_dump(mode="json"))
    folder = export_campaign(store, out, cfg.property_names(), round_index)
    typer.echo(str(folder))


@campaign_app.command("import-results")
def import_results(
    config: ConfigOpt,
    csv: Annotated[
        Path, typer.Option("--csv", help="results CSV: candidate_id + property columns")
    ],
) -> None:
    """Import lab results; the waiting round resumes on the next `matgen campaign run`."""
    from matgen.campaign import Campaign

    cfg = _load(config)
    if not csv.exists():
        typer.echo(f"error: no such file: {csv}", err=True)
        raise typer.Exit(2)
    try:
        res = Campaign(cfg).import_results(str(csv))
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"accepted {res['accepted']} rows, rejected {res['rejected']} "
        "(unknown or already labelled candidates)"
    )
    if res["rejected"]:
        raise typer.Exit(1)
