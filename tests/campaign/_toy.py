"""A toy labelled pool (rock-salt binaries) and campaign YAML for campaign and flow tests."""

from __future__ import annotations

from pathlib import Path

CATIONS = ["Li", "Na", "K", "Rb", "Cs", "Mg", "Ca", "Sr", "Ba", "Zn", "Cd", "Ni", "Co", "Fe"]
ANIONS = ["O", "S", "Se", "F", "Cl", "Br", "I"]


def write_toy_csv(path: Path) -> Path:
    """98 rock-salt AB crystals with made-up, composition-determined labels."""
    import pandas as pd
    from pymatgen.core import Element, Lattice, Structure

    rows = []
    for i, c in enumerate(CATIONS):
        for j, a in enumerate(ANIONS):
            ec, ea = Element(c), Element(a)
            lat = 2.0 * (float(ec.atomic_radius) + float(ea.atomic_radius))
            h = lat / 2
            s = Structure(Lattice([[0, h, h], [h, 0, h], [h, h, 0]]), [c, a],
                          [[0, 0, 0], [0.5, 0.5, 0.5]])
            gap = max(0.0, 2.2 * abs(float(ea.X) - float(ec.X)) - 1.5)
            ehull = round(0.03 * ((i * 7 + j * 3) % 5), 3)
            rows.append({"material_id": f"toy-{i:02d}-{j}", "band_gap": round(gap, 3),
                         "e_above_hull": ehull, "formation_energy_per_atom": -gap,
                         "cif": s.to(fmt="cif")})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def write_toy_config(folder: Path, csv: Path, name: str = "toy", oracle: str = "dataset",
                     rounds: int = 2, pool: int = 12, batch: int = 3, extra: str = "") -> Path:
    """A campaign YAML over the toy pool with dataset generator / scorer (the stand-ins)."""
    text = f"""
name: {name}
seed: 3
rounds: {rounds}
pool_size: {pool}
batch_size: {batch}
objectives:
  - {{property: band_gap, minimum: 1.0, maximum: 3.0, scale: 1.0}}
  - {{property: e_above_hull, maximum: 0.05, scale: 0.05}}
generator: {{kind: dataset, pool_csv: {csv}, chunk_size: 6}}
scorer: {{kind: dataset, labels_csv: {csv}, noise: {{band_gap: 0.4, e_above_hull: 0.03}},
          chunk_size: 4}}
oracle: {{kind: {oracle}, csv: {csv}}}
acquisition: {{min_labels_for_gp: 4}}
work_dir: {folder / 'work'}
export_on_finish: true
{extra}
"""
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path
