"""The HTML report of a lab hand-off: one self-contained file (plots as embedded PNG, a small
inline script that sorts the candidate table), readable offline and in any browser.

Sections: what judged stability and what a hit is; the merit-ranked candidate table (structure
pictures, links to the CIFs, oracle result next to the prediction, competing phases); hull
diagrams drawn on the same MP reference hull that ``e_above_hull`` used (pymatgen
``PDPlotter``, candidates overlaid); distributions of the predicted properties; progress per
round; the guards of each round; the column dictionary.
"""

from __future__ import annotations

import base64
import html
import io
import math
import warnings
from datetime import UTC, datetime
from typing import Any

from matgen.campaign._export import (
    UNITS,
    HullInfo,
    _describe_column,
    _finite,
    hit_definition,
    judge_text,
)
from matgen.campaign._store import CampaignStore

_E = html.escape

#: Columns of the HTML table (the CSV has them all), in order, when present.
_TABLE_COLS = ("rank", "id", "reduced_formula", "spacegroup", "outcome", "oracle_e_above_hull",
               "e_above_hull", "competing_phases", "novel", "ood_flag", "round",
               "generator_version")

_CELL_CLASS = {"id": " class='id'", "competing_phases": " class='phases'",
               "spacegroup": " class='sg'"}

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2433;
 background:#f6f7f9;line-height:1.45}
main{max-width:1400px;margin:0 auto;padding:24px}
h1{margin:0 0 4px;font-size:26px} h2{margin:32px 0 8px;font-size:20px;border-bottom:2px solid
 #dde1e7;padding-bottom:4px} h3{margin:8px 0;font-size:15px}
.sub{color:#5b6475;margin:0 0 16px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0}
.card{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:10px 16px;
 min-width:120px}
.card b{display:block;font-size:24px}
.note{background:#fff8e1;border-left:5px solid #f2b600;padding:10px 14px;border-radius:4px;
 margin:10px 0}
.note.info{background:#eef5ff;border-left-color:#3b7ddd}
.wrap{overflow-x:auto;background:#fff;border:1px solid #dde1e7;border-radius:8px}
table{border-collapse:collapse;width:100%;font-size:12.5px}
th,td{padding:4px 6px;border-bottom:1px solid #eceff3;text-align:left;vertical-align:middle}
th{background:#eef1f5;position:sticky;top:0;font-size:12px;line-height:1.25}
th.sort{cursor:pointer;user-select:none} th.sort:after{content:" \\2195";color:#98a1b0}
th.asc:after{content:" \\2191";color:#1d2433} th.desc:after{content:" \\2193";color:#1d2433}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr:hover td{background:#fafbfd}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.hit{background:#d7f5df;color:#17612f} .miss{background:#fde2e1;color:#8a1c17}
.wait{background:#eceff3;color:#4a5160}
img.thumb{width:64px;height:64px;object-fit:contain;background:#fff}
td.id{white-space:nowrap;font-size:12px} .warn{color:#8a1c17;font-size:11px;display:inline-block;
 max-width:170px;line-height:1.2}
td.phases{max-width:170px;font-size:12px} td.sg{max-width:80px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:16px}
figure{margin:0;background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:10px}
figure img{max-width:100%} figcaption{font-size:13px;color:#4a5160}
small{color:#5b6475}
"""

_JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
 t.querySelectorAll('th.sort').forEach(function(th,i){th.addEventListener('click',function(){
  var col=th.cellIndex, asc=!th.classList.contains('asc');
  t.querySelectorAll('th').forEach(function(h){h.classList.remove('asc','desc')});
  th.classList.add(asc?'asc':'desc');
  var body=t.tBodies[0], rows=Array.prototype.slice.call(body.rows);
  rows.sort(function(a,b){
   var x=a.cells[col].getAttribute('data-v'), y=b.cells[col].getAttribute('data-v');
   var nx=parseFloat(x), ny=parseFloat(y), r;
   if(x===''&&y!=='') return 1; if(y===''&&x!=='') return -1;
   if(!isNaN(nx)&&!isNaN(ny)) r=nx-ny; else r=String(x).localeCompare(String(y));
   return asc?r:-r;});
  rows.forEach(function(r){body.appendChild(r)});});});});
"""


# ---------------------------------------------------------------------------- figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig, dpi: int = 110) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    _plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def structure_picture(structure) -> str:
    """A small PNG (base64) of the cell and its atoms (ASE, jmol colours, covalent radii)."""
    from ase.visualize.plot import plot_atoms
    from pymatgen.io.ase import AseAtomsAdaptor

    plt = _plt()
    atoms = AseAtomsAdaptor.get_atoms(structure)
    fig, ax = plt.subplots(figsize=(1.6, 1.6))
    plot_atoms(atoms, ax, rotation="15x,-25y,0z", radii=0.45, show_unit_cell=2)
    ax.set_axis_off()
    return _png(fig, dpi=90)


def _round_ticks(ax, rounds: list[int]) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if rounds:
        ax.set_xlim(min(rounds) - 0.5, max(rounds) + 0.5)


def plot_progress(store: CampaignStore) -> str | None:
    plt = _plt()
    rs = [r for r in store.rounds() if r["metrics"]]
    if not rs:
        return None
    idx = [r["index"] for r in rs]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    h1 = ax.plot(idx, [r["metrics"].get("cumulative_hits", 0) for r in rs], "o-",
                 label="hits so far (all rounds)")
    h2 = ax.bar(idx, [r["metrics"].get("hits", 0) for r in rs], width=0.35, alpha=0.35,
                color="tab:blue", label="hits in the round's batch")
    ax.set_ylabel("oracle hits")
    ax.set_ylim(bottom=0)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax2 = ax.twinx()
    h3 = ax2.plot(idx, [r["metrics"].get("diversity", {}).get("formula_fraction", 0)
                        for r in rs], "^:", c="tab:green",
                  label="distinct-formula fraction of the batch (right axis)")
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("distinct-formula fraction")
    _round_ticks(ax, idx)
    ax.set_xlabel("round")
    handles = [*h1, h2, *h3]
    ax.legend(handles, [h.get_label() for h in handles], loc="upper center",
              bbox_to_anchor=(0.5, -0.2), ncol=1, frameon=False, fontsize=9)
    ax.set_title("progress per round")
    return _png(fig)


def plot_distributions(store: CampaignStore, rows: list[dict], props: list[str],
                       objectives: list[dict], round_index: int | None) -> list[tuple[str, str]]:
    """Histograms of each predicted property: every scored candidate vs the selected ones,
    the hit window shaded, oracle values of the selected ones as ticks."""
    plt = _plt()
    cands = [c for c in store.candidates(status="scored")
             if round_index is None or c["round_index"] == round_index]
    out = []
    windows = {o["property"]: (o.get("minimum"), o.get("maximum")) for o in objectives}
    for p in props:
        allv = [v for v in (_finite((c["scores"] or {}).get(p)) for c in cands) if v is not None]
        selv = [v for v in (_finite(r.get(p)) for r in rows) if v is not None]
        orc = [v for v in (_finite(r.get(f"oracle_{p}")) for r in rows) if v is not None]
        if not allv:
            continue
        fig, ax = plt.subplots(figsize=(5.6, 3.4))
        lo, hi, n_out = _robust_range(allv + orc)
        allv = [min(max(v, lo), hi) for v in allv]  # outliers land in the edge bins
        selv = [min(max(v, lo), hi) for v in selv]
        orc = [min(max(v, lo), hi) for v in orc]
        if math.isclose(lo, hi):
            lo, hi = lo - 0.5, hi + 0.5
        bins = [lo + (hi - lo) * k / 20 for k in range(21)]
        ax.hist(allv, bins=bins, color="0.75", label=f"predicted, all scored ({len(allv)})")
        ax.hist(selv, bins=bins, color="tab:red", alpha=0.8,
                label=f"predicted, selected ({len(selv)})")
        if orc:
            ymax = ax.get_ylim()[1]
            ax.plot(orc, [ymax * 0.03] * len(orc), "|", ms=18, mew=2, c="tab:blue",
                    label=f"oracle, selected ({len(orc)})")
        w = windows.get(p)
        if w and (w[0] is not None or w[1] is not None):
            a = w[0] if w[0] is not None else min(lo, w[1]) - abs(hi - lo)
            b = w[1] if w[1] is not None else max(hi, w[0]) + abs(hi - lo)
            ax.axvspan(a, b, color="tab:green", alpha=0.12, label="hit window")
            ax.set_xlim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
        unit = f" ({UNITS[p]})" if p in UNITS else ""
        ax.set_xlabel(f"{p}{unit}" + (f"; {n_out} value(s) beyond the range are counted in "
                                      "the edge bins" if n_out else ""))
        ax.set_ylabel("candidates")
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=8, frameon=False)
        ax.set_title(f"distribution of {p}")
        out.append((f"distribution of {p}", _png(fig)))
    return out


def _robust_range(vals: list[float]) -> tuple[float, float, int]:
    """A plotting range that a few wild values (an MLIP failure at -19 eV/atom) do not stretch:
    the 5th-95th percentile span, widened by its own width on each side, clipped to the data."""
    import numpy as np

    a = np.asarray(vals, dtype=float)
    q1, q9 = np.percentile(a, [5, 95])
    w = max(q9 - q1, 1e-6)
    lo, hi = max(a.min(), q1 - w), min(a.max(), q9 + w)
    if math.isclose(lo, hi):
        lo, hi = lo - 0.5, hi + 0.5
    return float(lo), float(hi), int(((a < lo) | (a > hi)).sum())


def _chemsys_order(rows: list[dict]) -> list[str]:
    from pymatgen.core import Composition

    order: list[str] = []
    for r in rows:  # rows are in merit order: the best system first
        els = sorted(el.symbol for el in Composition(r["reduced_formula"]).elements)
        key = "-".join(els)
        if 2 <= len(els) <= 3 and key not in order:
            order.append(key)
    return order


def plot_hull(hull: HullInfo, chemsys: str, rows: list[dict]) -> str | None:
    """The MP reference hull of ``chemsys`` (pymatgen ``PDPlotter``: stable reference phases and
    tie lines) with the candidates of that system overlaid at their predicted (red) and oracle
    (blue) formation energies; in a binary system a dotted line drops to the reference hull,
    so its length is the table's ``e_above_hull``."""
    from pymatgen.analysis.phase_diagram import PDPlotter
    from pymatgen.core import Composition

    plt = _plt()
    els = chemsys.split("-")
    try:
        pd = hull.hull.phase_diagram(els)
    except Exception:  # noqa: BLE001 - an element outside the references
        return None
    order = [e.symbol for e in pd.elements]
    inside = [r for r in rows if {el.symbol for el in Composition(r["reduced_formula"])
                                     .elements} <= set(els)]
    if not inside:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 5.0))
    plt.sca(ax)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        PDPlotter(pd, show_unstable=0, backend="matplotlib").get_plot(ax=ax, label_unstable=False)
    for t in ax.texts:
        t.set_fontsize(9)
    ternary = len(order) == 3

    def xy(comp: Composition, e_form: float) -> tuple[float, float]:
        f = [comp.get_atomic_fraction(el) for el in pd.elements[1:]]
        if ternary:
            return f[0] + 0.5 * f[1], math.sqrt(3) / 2 * f[1]
        return f[0], e_form

    ys = [c[1] for line in ax.lines for c in zip(*line.get_data(), strict=True)]
    handles = {}
    for r in inside:
        comp = Composition(r["reduced_formula"])
        e_hull = _finite(r.get("hull_e_form_per_atom"))
        if e_hull is None:
            continue
        for key, color, marker, what in (("e_above_hull", "tab:red", "*", "predicted"),
                                         ("oracle_e_above_hull", "tab:blue", "D", "oracle")):
            eh = _finite(r.get(key))
            if eh is None:
                continue
            x, y = xy(comp, e_hull + eh)
            h = ax.scatter([x], [y], s=140 if marker == "*" else 50, c=color, marker=marker,
                           zorder=5, edgecolors="k", linewidths=0.5)
            handles[what] = h
            if not ternary:
                ax.plot([x, x], [e_hull, y], ":", c=color, lw=1.2, zorder=4)
                ys.append(y)
            if what == "predicted" or r.get("e_above_hull") is None:
                ax.annotate(f"#{r['rank']} {r['reduced_formula']}\n{eh:+.3f}", (x, y),
                            textcoords="offset points", xytext=(6, 6), fontsize=8, color=color)
    if not ternary and ys:
        lo, hi = min(ys), max(max(ys), 0.0)
        pad = 0.1 * (hi - lo) + 0.05
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlabel(f"atom fraction of {order[1]} (rest {order[0]})", fontsize=10)
        ax.set_ylabel("formation energy (eV/atom)", fontsize=10)
        ax.tick_params(labelsize=9)
    ref = ax.plot([], [], "ko-", label="MP reference phases on the hull, tie lines")[0]
    labels = {"predicted": "candidate, scorer's energy (label: rank, formula, "
                           "e_above_hull eV/atom)",
              "oracle": "candidate, oracle's energy"}
    hs = [ref] + [handles[k] for k in ("predicted", "oracle") if k in handles]
    ls = [ref.get_label()] + [labels[k] for k in ("predicted", "oracle") if k in handles]
    ax.legend(hs, ls, loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize=8,
              frameon=False)
    ax.set_title(f"{chemsys}: MP reference hull and candidates", fontsize=11)
    return _png(fig)


# ---------------------------------------------------------------------------- HTML
def _cell(col: str, v: Any) -> tuple[str, str]:
    """(display html, sort value) of one table cell."""
    if v is None or v == "":
        return "<small>&ndash;</small>", ""
    if isinstance(v, bool):
        return ("yes" if v else "no"), str(int(v))
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1e4 else f"{v:.3g}", repr(v)
    return _E(str(v)), _E(str(v))


def _outcome_badge(o: str) -> str:
    cls = {"hit": "hit", "miss": "miss"}.get(o, "wait")
    return f"<span class='badge {cls}'>{_E(o)}</span>"


def _candidate_table(rows: list[dict], props: list[str], pics: dict[str, str]) -> str:
    extra = []
    for p in props:
        if p == "e_above_hull":
            continue
        extra += [f"oracle_{p}", p]
    cols = [c for c in _TABLE_COLS if any(r.get(c) not in (None, "") for r in rows)]
    i = cols.index("e_above_hull") + 1 if "e_above_hull" in cols else len(cols)
    cols[i:i] = [c for c in extra if any(r.get(c) not in (None, "") for r in rows)]
    heads = {"rank": "rank", "id": "id (CIF)", "reduced_formula": "formula",
             "spacegroup": "space group", "outcome": "oracle outcome",
             "oracle_e_above_hull": "E<sub>hull</sub> oracle<br><small>eV/atom</small>",
             "e_above_hull": "E<sub>hull</sub> predicted<br><small>eV/atom</small>",
             "competing_phases": "competing MP phases", "novel": "novel",
             "ood_flag": "out of domain", "acquisition_value": "acq. value",
             "round": "round", "warning": "check"}
    out = ["<div class='wrap'><table class='sortable' id='candidates'><thead><tr>",
           "<th>structure</th>"]
    for c in cols:
        h = heads.get(c)
        if h is None:
            base = c.removeprefix("oracle_")
            unit = f"<br><small>{_E(UNITS[base])}</small>" if base in UNITS else ""
            h = (f"{_E(base.replace('_', ' '))} "
                 f"{'oracle' if c.startswith('oracle_') else 'predicted'}{unit}")
        out.append(f"<th class='sort' title='{_E(c)}'>{h}</th>")
    out.append("</tr></thead><tbody>")
    for r in rows:
        out.append("<tr>")
        pic = pics.get(r["id"])
        out.append(f"<td><img class='thumb' alt='{_E(r['id'])}' src='data:image/png;base64,"
                   f"{pic}'></td>" if pic else "<td></td>")
        for c in cols:
            v = r.get(c)
            shown, key = _cell(c, v)
            num = isinstance(v, int | float) and not isinstance(v, bool)
            if c == "id":
                shown = (f"<a href='cif/{_E(r['id'])}.cif'>{_E(r['id'])}</a><br>"
                         f"<small><a href='cif/{_E(r['id'])}.json'>scores</a></small>")
            elif c == "outcome":
                shown = _outcome_badge(str(v))
                if r.get("warning"):
                    short = str(r["warning"]).split(":")[0]
                    shown += (f"<br><span class='warn' title='{_E(str(r['warning']))}'>&#9888; "
                              f"{_E(short)}</span>")
            elif c == "ood_flag" and v is not None:
                shown = (f"{'yes' if v else 'no'} <small>({_finite(r.get('ood_score')) or 0:.2f})"
                         "</small>")
            elif c in ("e_above_hull",) or (c in props and f"{c}_std" in r):
                std = _finite(r.get(f"{c}_std"))
                if std is not None and v is not None:
                    shown += f" <small>± {std:.3f}</small>"
            cls = " class='num'" if num else _CELL_CLASS.get(c, "")
            out.append(f"<td{cls} data-v='{key}'>{shown}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _rounds_table(store: CampaignStore) -> str:
    out = [("<div class='wrap'><table><thead><tr><th>round</th><th>status</th><th>generated</th>"
           "<th>scored</th><th>selected</th><th>oracle hits</th><th>distinct formulas</th>"
           "<th>stable &amp; SMACT-valid fraction</th><th>acquisition</th><th>generator</th>"
           "<th>alerts</th>"
           "</tr></thead><tbody>")]
    for r in store.rounds():
        m = r["metrics"] or {}
        ss = m.get("stability_synthesizability", {}).get("stable_and_smact_fraction", "")
        out.append(
            f"<tr><td>{r['index']}</td><td>{_E(r['status'])}</td>"
            f"<td>{m.get('generated', '')}</td><td>{m.get('scored', '')}</td>"
            f"<td>{m.get('batch_size', m.get('selected', ''))}</td><td>{m.get('hits', '')}</td>"
            f"<td>{m.get('diversity', {}).get('distinct_formulas', '')}</td>"
            f"<td>{f'{ss:.2f}' if isinstance(ss, float) else ss}</td>"
            f"<td>{_E(r.get('acquisition') or '')}</td>"
            f"<td>{_E(r.get('generator_version') or '')}</td>"
            f"<td>{_E('; '.join(m.get('alerts', []))) or '<small>none</small>'}</td></tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _dictionary(cols: list[str], cfg: dict, objectives: list[dict]) -> str:
    out = [("<div class='wrap'><table><thead><tr><th>column of candidates.csv</th><th>unit</th>"
           "<th>meaning</th></tr></thead><tbody>")]
    for c in cols:
        unit, what = _describe_column(c, cfg, objectives)
        out.append(f"<tr><td><code>{_E(c)}</code></td><td>{_E(unit)}</td><td>{_E(what)}</td>"
                   "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _figure(caption: str, img: str, note: str = "") -> str:
    return (f"<figure><img alt='{_E(caption)}' src='data:image/png;base64,{img}'>"
            f"<figcaption>{_E(caption)}{(' ' + note) if note else ''}</figcaption></figure>")


def render_report(store: CampaignStore, rows: list[dict], cols: list[str],
                  structures: dict[str, Any], hull: HullInfo, cfg: dict[str, Any],
                  objectives: list[dict], properties: list[str], round_index: int | None,
                  title: str) -> str:
    """The report's HTML text (self-contained)."""
    import logging

    mpl_log = logging.getLogger("matplotlib")
    level = mpl_log.level
    mpl_log.setLevel(logging.ERROR)  # "Ignoring fixed y limits ..." from the ternary plots
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _render(store, rows, cols, structures, hull, cfg, objectives, properties,
                           round_index, title)
    finally:
        mpl_log.setLevel(level)


def _render(store, rows, cols, structures, hull, cfg, objectives, properties, round_index,
            title) -> str:
    judge = judge_text(cfg)
    n_hit = sum(r["outcome"] == "hit" for r in rows)
    n_miss = sum(r["outcome"] == "miss" for r in rows)
    n_wait = sum(r["outcome"] == "awaiting oracle" for r in rows)
    pics = {}
    for cid, s in structures.items():
        try:
            pics[cid] = structure_picture(s)
        except Exception:  # noqa: BLE001, S112 - a picture is optional
            continue
    props = [p for p in dict.fromkeys(["e_above_hull", *properties])]
    predicted = [k for k in cols if k in ("band_gap", "formation_energy_per_atom")
                 and k not in props]
    scope = f"round {round_index}" if round_index is not None else "all rounds"
    dft = "DFT" in judge["oracle"] and "not DFT" not in judge["oracle"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>{_E(title)} - lab hand-off</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{_E(title)}: candidates for the lab</h1>",
        (f"<p class='sub'>{scope}; exported "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; files: "
        "<a href='candidates.csv'>candidates.csv</a> (all columns), "
        "<a href='columns.csv'>columns.csv</a> (units and meanings), <code>cif/</code> "
        "(one symmetrised CIF and one JSON of scores per candidate)</p>"),
        "<div class='cards'>",
        f"<div class='card'><b>{len(rows)}</b>selected</div>",
        f"<div class='card'><b>{n_hit}</b>oracle hits</div>",
        f"<div class='card'><b>{n_miss}</b>oracle misses</div>",
        f"<div class='card'><b>{n_wait}</b>awaiting oracle</div></div>",
        "<div class='note'><b>What judged stability.</b> "
        f"Predictions: {_E(judge['scorer'])}. Oracle: {_E(judge['oracle'])}. "
        + ("" if dft else "<b>No DFT calculation was run</b>: an energy above the hull here is "
           "an ML estimate measured against Materials Project formation energies (legacy "
           "corrections), good to a few tens of meV/atom at best. ")
        + "</div>",
        (f"<div class='note info'><b>Hit.</b> A candidate is a hit when "
        f"{_E(hit_definition(objectives))}. <b>Rank</b> is merit: hits first, then "
        "candidates awaiting the oracle, then misses; within each group by the distance from "
        "the hit window (oracle value, else prediction), then by predicted energy above the "
        "hull. <b>Novel</b>: no training-set structure matched and the composition is not "
        "among the MP hull references. <b>check</b>: why a candidate's numbers deserve a second "
        "look, shown under the outcome (such candidates rank last within their group). "
        "<b>Out of domain</b>: the property predictors have seen "
        "nothing like it (OOD score > 0.8), so their numbers deserve less trust. "
        "<code>acquisition_value</code> (CSV): the acquisition function's value for the pick "
        "(log scale, higher = more expected; compare only within a round).</div>"),
    ]
    if hull.note:
        parts.append(f"<div class='note'>{_E(hull.note)}</div>")
    parts += ["<h2>Candidates (click a header to sort)</h2>",
              _candidate_table(rows, props + [k for k in predicted if k == "band_gap"], pics)]

    figs = []
    if hull.hull is not None:
        systems = _chemsys_order(rows)
        for s in systems[:6]:
            img = plot_hull(hull, s, rows)
            if img:
                figs.append(_figure(f"hull {s}", img))
        skipped = len({r["reduced_formula"] for r in rows}) and len(systems) > 6
        parts.append("<h2>Hull diagrams</h2><p>Built from the MP reference hull that "
                     f"<code>e_above_hull</code> was computed on (<code>{_E(hull.version)}"
                     "</code>): black points and lines are the stable reference phases; each "
                     "candidate sits at its formation energy, so in a binary system the dotted "
                     "drop to the hull is its energy above the hull. Systems of one or of more "
                     "than three elements are not drawn; their competing phases are in the "
                     "table." + (" Only the six best-ranked systems are drawn." if skipped
                                 else "") + "</p>")
        parts.append(f"<div class='grid'>{''.join(figs)}</div>" if figs else
                     "<p><small>No candidate of two or three elements.</small></p>")
    dist = plot_distributions(store, rows, props + predicted, objectives, round_index)
    if dist:
        parts.append("<h2>Property distributions</h2><div class='grid'>"
                     + "".join(_figure(c, i) for c, i in dist) + "</div>")
    prog = plot_progress(store)
    if prog:
        parts.append("<h2>Progress</h2><div class='grid'>" + _figure("progress per round", prog)
                     + "</div>")
    parts += ["<h2>Rounds and guards</h2>", _rounds_table(store),
              "<h2>Column dictionary</h2>", _dictionary(cols, cfg, objectives),
              f"<script>{_JS}</script></main></body></html>"]
    return "\n".join(parts)
