"""Write a CSV of training rows a run saw (for CSP recall on training crystals next to val):
the rows of the ``data.train_limit`` subset (``--limit``, the run's ``--seed``), or of the whole
split, and of those ``--rows`` drawn at random (``--row-seed``), in the split's CSV format.

    python benchmarks/train_rows.py --data-dir /tmp/datasets/mp20_reduced --limit 2474 --seed 0 \
        --rows 1000 --out /tmp/train_rows.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def subset_rows(ids: list[str], limit: int | None, seed: int, rows: int,
                row_seed: int) -> list[str]:
    """``rows`` of the material ids a run with ``data.train_limit = limit`` and ``seed`` trains on
    (``ids`` in the loaded dataset's order)."""
    from matgen.training import train_subset_indices

    keep = [ids[i] for i in train_subset_indices(len(ids), limit or len(ids), seed)]
    if rows >= len(keep):
        return keep
    return pd.Series(keep).sample(rows, random_state=row_seed).tolist()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True, help="folder with train.csv")
    ap.add_argument("--limit", type=int, default=None, help="the run's data.train_limit")
    ap.add_argument("--seed", type=int, default=0, help="the run's seed")
    ap.add_argument("--max-atoms", type=int, default=20, help="the run's data.max_atoms")
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--row-seed", type=int, default=7)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    from matgen.data import load_dataset

    csv = args.data_dir / "train.csv"
    ds = load_dataset(str(csv), split="train", max_atoms=args.max_atoms)
    frame = pd.read_csv(csv).set_index("material_id")
    pick = subset_rows(list(ds.ids), args.limit, args.seed, args.rows, args.row_seed)
    frame.loc[pick].reset_index().to_csv(args.out, index=False)
    print(f"{len(pick)} training rows -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
