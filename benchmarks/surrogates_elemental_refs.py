"""Compute the MLIP-consistent elemental reference table shipped in ``matgen/assets/hull``.

    OMP_NUM_THREADS=1 python benchmarks/surrogates_elemental_refs.py [--mlip chgnet]
        [--device cpu] [--max-atoms 32] [--out matgen/assets/hull/elemental_energies_chgnet.json]

For each of the 89 MP elemental reference entries, relaxes (batched FIRE + cell filter) the
entry's own material where the shared datasets hold it, the other elemental structures of
MP-20 (reduced) and MPTS-52 up to ``--max-atoms`` atoms, and ASE's ``bulk(symbol)``; keeps the
lowest energy per atom. Noble gases keep the MP value. See ``matgen.surrogates._elemental``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

from matgen.surrogates import RelaxConfig, load_mlip
from matgen.surrogates._elemental import compute_elemental_references, mlip_elemental_asset

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mlip", default="chgnet")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-atoms", type=int, default=32)
    ap.add_argument("--fmax", type=float, default=0.05)
    ap.add_argument("--max-steps", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--data-dir", default=os.environ.get("MATGEN_DATA_DIR",
                                                         REPO.parent / "shared" / "datasets"))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    mlip = load_mlip(args.mlip, device=args.device)
    cfg = RelaxConfig(fmax=args.fmax, max_steps=args.max_steps, batch_size=args.batch_size)
    t0 = time.perf_counter()
    table = compute_elemental_references(mlip, args.data_dir, cfg, max_atoms=args.max_atoms)
    out = {
        "mlip": f"{args.mlip} {mlip.version}",
        "relax_config": {"fmax": cfg.fmax, "max_steps": cfg.max_steps, "relax_cell": True},
        "max_atoms": args.max_atoms,
        "seconds": round(time.perf_counter() - t0, 1),
        "written_by": "benchmarks/surrogates_elemental_refs.py",
        **table,
    }
    path = Path(args.out) if args.out else mlip_elemental_asset(args.mlip)
    path.write_text(json.dumps(out, indent=1, sort_keys=False) + "\n")
    fell_back = {el: s for el, s in table["sources"].items() if s.startswith("mp (")}
    print(f"{len(table['energies'])} elements, {len(fell_back)} MP fallbacks: {fell_back}; "
          f"{out['seconds']} s -> {path}")


if __name__ == "__main__":
    main()
