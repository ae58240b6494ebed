"""A stand-in for :class:`matgen.dft.DFTVerifier` (no GPAW) and a DFT-oracle campaign YAML."""

from __future__ import annotations

from pathlib import Path

FAILING = {"NaCl"}  # the fake's SCF never converges for these


class FakeVerifier:
    """``verify_one`` as :class:`matgen.dft.DFTVerifier` answers it, from the composition."""

    def __init__(self):
        self.calls: list[str] = []

    def verify_one(self, structure, label=""):
        f = structure.composition.reduced_formula
        self.calls.append(label)
        if f in FAILING:
            return {"dft_status": "scf_not_converged", "dft_message": "200 iterations",
                    "dft_energy_per_atom": None, "dft_e_form_per_atom": None,
                    "dft_e_above_hull": None, "judge": "dft:gpaw-pbe"}
        z = sum(el.Z for el in structure.composition.elements)
        return {"dft_status": "ok", "dft_message": "", "dft_energy_per_atom": -3.0 - z / 100,
                "dft_e_form_per_atom": -0.5, "dft_e_above_hull": 0.01 * (z % 7),
                "judge": "dft:gpaw-pbe"}


def dft_config(tmp_path: Path, csv, extra_oracle: str = "", batch: int = 4) -> str:
    text = f"""
name: dfttoy
seed: 1
rounds: 1
pool_size: 4
batch_size: {batch}
objectives:
  - {{property: e_above_hull, maximum: 0.05, scale: 0.05}}
generator: {{kind: dataset, pool_csv: {csv}, chunk_size: 6}}
scorer: {{kind: dataset, labels_csv: {csv}, noise: {{e_above_hull: 0.03}}, chunk_size: 4}}
oracle: {{kind: dft{extra_oracle}}}
acquisition: {{kind: random}}
work_dir: {tmp_path / 'work'}
"""
    path = tmp_path / "dft.yaml"
    path.write_text(text)
    return str(path)


