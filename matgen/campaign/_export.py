"""Lab hand-off: ranked CSV, one CIF per candidate, an HTML report with embedded plots.

Every export goes to a new folder; nothing is ever overwritten.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from matgen.campaign._store import CampaignStore


def _new_folder(out: Path, stem: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    base = out / stem
    path, k = base, 1
    while True:
        try:
            path.mkdir(parents=False, exist_ok=False)
            return path
        except FileExistsError:
            k += 1
            path = Path(f"{base}_{k}")


def export_rows(store: CampaignStore, properties: list[str], round_index: int | None,
                seed_of: dict[int, int]) -> list[dict[str, Any]]:
    """The ranked rows of the selected candidates of ``round_index`` (default: all rounds)."""
    rounds = {r["index"]: r for r in store.rounds()}
    labels = store.labels()
    sel = [c for c in store.candidates(selected=True)
           if round_index is None or c["selected_round"] == round_index]
    sel.sort(key=lambda c: (c["selected_round"], c["rank"] if c["rank"] is not None else 0))
    rows = []
    for c in sel:
        sc = c.get("scores") or {}
        r = rounds.get(c["selected_round"], {})
        row: dict[str, Any] = {
            "rank": len(rows) + 1,
            "id": c["id"],
            "formula": c["formula"],
            "reduced_formula": c["reduced_formula"],
            "spacegroup": c["spacegroup"] or "",
            "e_above_hull": sc.get("e_above_hull"),
            "e_above_hull_std": sc.get("e_above_hull_std"),
        }
        for p in properties:
            if p == "e_above_hull":
                continue
            row[p] = sc.get(p)
            row[f"{p}_std"] = sc.get(f"{p}_std")
        row["acquisition_value"] = c["acq_value"]
        row["ood_score"] = sc.get("ood")
        row["ood_flag"] = bool(sc.get("ood_flag") or 0)
        row["round"] = c["selected_round"]
        row["model_version"] = r.get("model_version") or ""
        row["hull_version"] = r.get("hull_version") or ""
        row["seed"] = seed_of.get(c["selected_round"], r.get("seed"))
        for k, v in sorted(labels.get(c["id"], {}).items()):
            row[f"oracle_{k}"] = v
        row["source_id"] = c["source_id"] or ""
        rows.append(row)
    return rows


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plot_property_vs_hull(store: CampaignStore, prop: str, round_index: int | None) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cands = [c for c in store.candidates(status="scored")
             if round_index is None or c["round_index"] <= round_index]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for sel, kw in ((False, {"c": "0.7", "s": 12, "label": "scored"}),
                    (True, {"c": "tab:red", "s": 30, "marker": "*", "label": "selected"})):
        pts = [((c["scores"] or {}).get("e_above_hull"), (c["scores"] or {}).get(prop))
               for c in cands if bool(c["selected"]) == sel]
        pts = [(x, y) for x, y in pts if x is not None and y is not None]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.scatter(xs, ys, **kw)
    ax.set_xlabel("predicted energy above hull (eV/atom)")
    ax.set_ylabel(f"predicted {prop}")
    ax.legend()
    ax.set_title(f"{prop} vs stability")
    return _png(fig)


def _plot_progress(store: CampaignStore) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = [r for r in store.rounds() if r["metrics"]]
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    if rs:
        idx = [r["index"] for r in rs]
        ax.plot(idx, [r["metrics"].get("cumulative_hits", 0) for r in rs], "o-",
                label="cumulative hits")
        ax.plot(idx, [r["metrics"].get("hits", 0) for r in rs], "s--", label="hits in batch")
        ax2 = ax.twinx()
        ax2.plot(idx, [r["metrics"].get("diversity", {}).get("formula_fraction", 0) for r in rs],
                 "^:", c="tab:green", label="distinct formula fraction")
        ax2.set_ylim(0, 1.05)
        ax2.set_ylabel("distinct formula fraction")
    ax.set_xlabel("round")
    ax.set_ylabel("hits")
    ax.legend(loc="upper left")
    ax.set_title("progress per round")
    return _png(fig)


def _plot_hulls(store: CampaignStore, rows: list[dict], top: int = 2) -> list[tuple[str, str]]:
    """Formation-energy hull diagrams (pymatgen PDPlotter) of the top chemical systems.

    Built from the scored candidates that carry ``e_form_per_atom`` plus the elements at zero;
    systems without formation energies are skipped.
    """
    import matplotlib

    matplotlib.use("Agg")
    from pymatgen.analysis.phase_diagram import PDEntry, PDPlotter, PhaseDiagram
    from pymatgen.core import Composition, Element

    systems: list[str] = []
    for r in rows:
        elems = "-".join(sorted(el.symbol for el in Composition(r["formula"]).elements))
        if elems not in systems and 2 <= elems.count("-") + 1 <= 3:
            systems.append(elems)
    out = []
    cands = store.candidates(status="scored")
    for sysname in systems[:top]:
        els = set(sysname.split("-"))
        entries = [PDEntry(Composition({Element(e): 1}), 0.0, name=e) for e in els]
        for c in cands:
            comp = Composition(c["formula"])
            ef = (c["scores"] or {}).get("e_form_per_atom")
            if ef is None or not {e.symbol for e in comp.elements} <= els:
                continue
            entries.append(PDEntry(comp, ef * comp.num_atoms, name=c["reduced_formula"]))
        if len(entries) <= len(els):
            continue
        try:
            pd = PhaseDiagram(entries)
            ax = PDPlotter(pd, backend="matplotlib", show_unstable=0.2).get_plot()
            out.append((sysname, _png(ax.get_figure())))
        except Exception:  # noqa: BLE001, S112 - a degenerate system is skipped, not fatal
            continue
    return out


def export_campaign(
    store: CampaignStore,
    out_dir: str | Path,
    properties: list[str],
    round_index: int | None = None,
    title: str | None = None,
) -> Path:
    """Write the lab hand-off into a NEW folder under ``out_dir``.

    Contents: ``candidates.csv`` (ranked; id, formula, space group, e_above_hull, properties
    with std, acquisition value, OOD flag, round, model and hull versions, seed, oracle labels),
    ``cif/<id>.cif`` (relaxed structure when available), ``report.html`` (plots embedded as
    PNG: property vs energy above hull with the selected batch marked, hull diagrams of the top
    chemical systems, progress per round, and each round's guard metrics).

    Returns:
        The new folder.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    tag = f"round{round_index:03d}" if round_index is not None else "all"
    folder = _new_folder(Path(out_dir), f"{store.name}_{tag}_{stamp}")
    seeds = {r["index"]: r["seed"] for r in store.rounds()}
    rows = export_rows(store, properties, round_index, seeds)
    cols: list[str] = []
    for r in rows:
        cols.extend(k for k in r if k not in cols)
    with (folder / "candidates.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols or ["rank", "id"])
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
    (folder / "cif").mkdir()
    by_id = {c["id"]: c for c in store.candidates(selected=True)}
    for r in rows:
        c = by_id[r["id"]]
        cif = (c.get("scores") or {}).get("relaxed_cif") or c["cif"]
        (folder / "cif" / f"{r['id']}.cif").write_text(cif)
    plots = [(f"{p} vs energy above hull", _plot_property_vs_hull(store, p, round_index))
             for p in properties if p != "e_above_hull"]
    plots += [(f"hull: {s}", img) for s, img in _plot_hulls(store, rows)]
    plots.append(("progress per round", _plot_progress(store)))
    (folder / "report.html").write_text(_html(store, rows, plots, title or store.name))
    return folder


def _html(store: CampaignStore, rows: list[dict], plots: list[tuple[str, str]],
          title: str) -> str:
    e = html.escape
    parts = [f"<html><head><meta charset='utf-8'><title>{e(title)}</title></head><body>",
             f"<h1>{e(title)}</h1>", (f"<p>{len(rows)} candidates; exported "
             f"{datetime.now(UTC).isoformat(timespec='seconds')}</p>")]
    for name, img in plots:
        parts.append(f"<h2>{e(name)}</h2><img src='data:image/png;base64,{img}'/>")
    parts.append("<h2>Rounds and guards</h2><table border='1'><tr><th>round</th><th>status</th>"
                 "<th>hits</th><th>distinct formulas</th><th>stable &amp; SMACT</th>"
                 "<th>alerts</th></tr>")
    for r in store.rounds():
        m = r["metrics"] or {}
        parts.append(
            f"<tr><td>{r['index']}</td><td>{e(r['status'])}</td><td>{m.get('hits', '')}</td>"
            f"<td>{m.get('diversity', {}).get('distinct_formulas', '')}</td>"
            f"<td>{m.get('stability_synthesizability', {}).get('stable_and_smact_fraction', '')}"
            f"</td><td>{e('; '.join(m.get('alerts', [])))}</td></tr>")
    parts.append("</table><h2>Candidates</h2><table border='1'>")
    if rows:
        cols = list(rows[0])
        parts.append("<tr>" + "".join(f"<th>{e(c)}</th>" for c in cols) + "</tr>")
        for r in rows:
            parts.append("<tr>" + "".join(
                f"<td>{e(f'{v:.4g}' if isinstance(v, float) else str(v))}</td>"
                for v in (r.get(c) for c in cols)) + "</tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts)
