"""``matgen score --oracle dft``: the DFT verification of the best-scored rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape

from matgen.cli._app import fail


@dataclass(frozen=True)
class DFTOptions:
    """What ``--oracle dft`` asked for: rows to verify, cache folder, seconds per calculation."""

    top: int
    cache_dir: Path
    time_limit_s: float

    @classmethod
    def build(cls, top: int, cache_dir: Path, time_limit_s: float) -> DFTOptions:
        """Checked before any scoring: GPAW must be there and the cache folder writable."""
        from matgen.dft import gpaw_available

        if not gpaw_available():
            fail("--oracle dft needs GPAW and its PAW datasets: bash scripts/install_dft.sh", 2)
        if cache_dir.exists() and not cache_dir.is_dir():
            fail(f"--dft-cache {cache_dir}: not a folder", 2)
        return cls(top, cache_dir, time_limit_s)


def make_verifier(cache_dir: Path, time_limit_s: float):
    """The :class:`matgen.dft.DFTVerifier` of a score run (tests put a stand-in here)."""
    from matgen.dft import DFTSettings, DFTVerifier

    return DFTVerifier(cache_dir, DFTSettings(time_limit_s=time_limit_s))


def verify_rows(rows: list[dict], opts: DFTOptions, mlip: str, progress: bool, err) -> None:
    """Verify the ``opts.top`` best rows in place (see :func:`matgen.dft.add_dft_scores`) and
    say on ``err`` (a rich Console) what DFT found and what failed."""
    from matgen._progress import Progress
    from matgen.dft import add_dft_scores, rank_for_dft

    n = min(opts.top, len(rank_for_dft(rows)))
    if n < opts.top:
        err.print(f"--top {opts.top}: only {n} rows have an MLIP e_above_hull to rank by")
    verifier = make_verifier(opts.cache_dir, opts.time_limit_s) if n else None
    with Progress("dft", total=n, unit="structures", enabled=progress and n > 0) as bar:
        chosen = add_dft_scores(rows, opts.top, verifier, mlip, progress=bar.advance)
    for i in chosen:
        r = rows[i]
        rid = escape(str(r.get("id")))
        if r.get("dft_status") != "ok":
            err.print(f"dft failed {rid}: {escape(str(r['dft_status']))} "
                      f"{escape(str(r.get('dft_message') or ''))}")
            continue
        e = r.get("dft_e_above_hull")
        hull = "n/a" if e is None else f"{e:+.3f} eV/atom"
        err.print(f"dft {rid}: e_above_hull {hull} (DFT) vs {float(r['e_above_hull']):+.3f} "
                  f"({escape(mlip)}); MP corrections: {escape(str(r.get('dft_mp_correction')))}")
    err.print(f"DFT-verified {len(chosen)} rows; calculations cached in "
              f"{escape(str(opts.cache_dir))}")
