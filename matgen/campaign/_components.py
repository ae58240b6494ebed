"""Generator and scorer protocols and their adapters (model, surrogates, dataset stand-ins)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from matgen.crystal import CrystalBatch


class MissingModelError(FileNotFoundError):
    """The generator checkpoint does not exist (the message names the path and the fix)."""


@runtime_checkable
class Generator(Protocol):
    """Makes candidate crystals.

    ``__call__(n, conditions, chemsys, seed) -> CrystalBatch`` returns ``n`` crystals (fewer only
    if the source runs out); ``conditions`` maps property names to target values, ``chemsys``
    lists allowed elements (or None), ``seed`` makes the draw reproducible. ``version`` names the
    model (written to the lab export).
    """

    version: str

    def __call__(
        self, n: int, conditions: dict[str, float], chemsys: list[str] | None, seed: int
    ) -> CrystalBatch: ...


@runtime_checkable
class Scorer(Protocol):
    """Scores candidates: relax, energy above hull, properties with uncertainty, OOD.

    ``__call__(batch, seed)`` returns one dict per crystal with float values: ``e_above_hull``
    (eV/atom), each property ``p`` with ``p_std``, ``ood`` (a score, larger = further from the
    training data), ``ood_flag`` (0/1), and optionally ``relaxed_cif`` (a string).
    ``update(structures, labels)`` retrains the property predictors with new oracle labels
    (active learning) and returns the new model version. ``model_version`` and
    ``hull_version`` name what was used.
    """

    model_version: str
    hull_version: str

    def __call__(self, batch: CrystalBatch, seed: int) -> list[dict[str, Any]]: ...

    def update(self, structures: list, labels: list[dict[str, float]]) -> str: ...


# ---------------------------------------------------------------------------------- dataset


def read_labelled_csv(path: str | Path) -> Any:
    """Read a CDVAE-style CSV (``material_id``, ``cif``, property columns); gz allowed."""
    import pandas as pd

    df = pd.read_csv(path)
    if "material_id" not in df.columns:
        df["material_id"] = [f"{Path(path).name.split('.')[0]}-{i}" for i in range(len(df))]
    df["material_id"] = df["material_id"].astype(str)
    return df


def _structures_from_cifs(cifs: Sequence[str]) -> list:
    from pymatgen.core import Structure

    return [Structure.from_str(c, fmt="cif") for c in cifs]


class DatasetGenerator:
    """A stand-in generator drawing unseen rows of a labelled CSV (simulated campaigns).

    Args:
        pool_csv: CDVAE-style CSV.
        exclude_ids: ids never to draw.
    """

    def __init__(self, pool_csv: str | Path, exclude_ids: Sequence[str] = ()) -> None:
        self.df = read_labelled_csv(pool_csv)
        self.version = f"dataset:{Path(pool_csv).name}"
        self._drawn: set[str] = set(exclude_ids)

    def __call__(
        self, n: int, conditions: dict[str, float], chemsys: list[str] | None, seed: int
    ) -> CrystalBatch:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(self.df))
        rows = []
        for i in order:
            mid = self.df["material_id"].iat[i]
            if mid in self._drawn:
                continue
            rows.append(i)
            if len(rows) == n:
                break
        sub = self.df.iloc[rows]
        return CrystalBatch.from_structures(
            _structures_from_cifs(sub["cif"].tolist()), ids=sub["material_id"].tolist()
        )

    def exclude(self, ids: Sequence[str]) -> None:
        """Never draw ``ids`` again (candidates of earlier rounds)."""
        self._drawn.update(ids)


class DatasetScorer:
    """A stand-in scorer: true labels of a CSV plus seeded Gaussian noise, matched by id.

    ``noise`` gives the standard deviation per property (the reported ``_std``).
    """

    def __init__(self, labels_csv: str | Path, properties: Sequence[str], noise: dict[str, float]):
        df = read_labelled_csv(labels_csv)
        self.table = df.set_index("material_id")
        self.properties = list(properties)
        self.noise = dict(noise)
        self.model_version = f"dataset-scorer:{Path(labels_csv).name}"
        self.hull_version = "dataset"
        self.updates = 0

    def __call__(self, batch: CrystalBatch, seed: int) -> list[dict[str, Any]]:
        rng = np.random.default_rng(seed)
        out = []
        for cid in batch.ids:
            row: dict[str, Any] = {}
            for p in self.properties:
                true = self.table[p].get(cid, float("nan")) if p in self.table else float("nan")
                s = self.noise.get(p, 0.1)
                row[p] = float(true) + float(rng.normal(0.0, s))
                row[f"{p}_std"] = s
            row.setdefault("e_above_hull", row.get("e_above_hull", float("nan")))
            row["ood"] = 0.0
            row["ood_flag"] = 0.0
            out.append(row)
        return out

    def update(self, structures: list, labels: list[dict[str, float]]) -> str:
        self.updates += 1
        self.model_version = f"{self.model_version.split('+')[0]}+al{self.updates}"
        return self.model_version


# ---------------------------------------------------------------------------------- model


class ModelGenerator:
    """Adapter: the conditional diffusion model as a :class:`Generator`.

    Loads the checkpoint with ``matgen.models.load_checkpoint`` and samples with
    ``matgen.diffusion.sample`` (classifier-free guidance and chemical-system masking from
    ``matgen.guidance`` when requested).

    Args:
        checkpoint: checkpoint folder or file.
        steps: sampler steps.
        guidance: classifier-free guidance scale (1 = none).
        num_atoms: atom counts to draw from (uniformly, seeded).
        device: ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``.

    Raises:
        MissingModelError: the checkpoint does not exist.
    """

    def __init__(
        self,
        checkpoint: str | Path,
        steps: int = 50,
        guidance: float = 2.0,
        num_atoms: Sequence[int] = (4, 6, 8, 10, 12),
        device: str = "auto",
    ) -> None:
        path = Path(checkpoint)
        if not path.exists():
            raise MissingModelError(
                f"generator checkpoint not found: {path} (the shipped default model lives in "
                "matgen/assets/models/default/; train one with `matgen train` or set "
                "generator.checkpoint in the campaign YAML)"
            )
        from matgen.models import load_checkpoint

        self.model, self.meta = load_checkpoint(path)
        self.device = torch.device(
            "cuda" if device == "auto" and torch.cuda.is_available() else
            ("cpu" if device == "auto" else device)
        )
        self.model = self.model.to(self.device).eval()
        self.steps = steps
        self.guidance = guidance
        self.num_atoms = list(num_atoms)
        meta = self.meta if isinstance(self.meta, dict) else {}
        self.version = str(meta.get("version") or meta.get("name") or path.name)

    def __call__(
        self, n: int, conditions: dict[str, float], chemsys: list[str] | None, seed: int
    ) -> CrystalBatch:
        from matgen import diffusion

        gen = torch.Generator(device="cpu").manual_seed(seed)
        na = torch.tensor(self.num_atoms)[torch.randint(len(self.num_atoms), (n,), generator=gen)]
        known = set(getattr(self.model, "condition_names", None) or self.meta.get("conditions", []))
        cond = None
        if conditions:
            use = {k: v for k, v in conditions.items() if not known or k in known}
            cond = {k: torch.full((n,), float(v)) for k, v in use.items()} or None
        diff = self._diffusion()
        kwargs: dict[str, Any] = {
            "num_atoms": na, "atomic_numbers": None, "steps": self.steps, "cond": cond,
            "guidance": self.guidance if cond else 1.0, "generator": gen,
        }
        if chemsys:
            from pymatgen.core import Element

            from matgen.crystal import MAX_Z

            mask = torch.zeros(MAX_Z + 1, dtype=torch.bool)
            for el in chemsys:
                mask[Element(el).Z] = True
            kwargs["type_mask"] = mask
        with torch.no_grad():
            out = diffusion.sample(self.model, diff, **kwargs)
        return out.to("cpu")

    def _diffusion(self):
        from matgen import diffusion

        meta = self.meta if isinstance(self.meta, dict) else {}
        cfg = meta.get("diffusion") or {}
        return diffusion.build_diffusion(diffusion.DiffusionConfig(**cfg))


class SurrogateScorer:
    """Adapter: ``matgen.surrogates`` (MLIP relaxation, hull, predictors, OOD) as a
    :class:`Scorer`. Expects ``matgen.surrogates.score_batch(batch, relax=..., ...)`` to return
    one dict per crystal, and ``matgen.surrogates.update_predictors`` for active learning."""

    def __init__(self, relax: bool = True, relax_steps: int = 100, fmax: float = 0.1) -> None:
        import matgen.surrogates as sur

        if not hasattr(sur, "score_batch"):
            raise RuntimeError(
                "matgen.surrogates.score_batch is not available yet; use scorer.kind: dataset"
            )
        self._sur = sur
        self.relax, self.relax_steps, self.fmax = relax, relax_steps, fmax
        self.model_version = str(getattr(sur, "MODEL_VERSION", "surrogates"))
        self.hull_version = str(getattr(sur, "HULL_VERSION", "mp-hull"))

    def __call__(self, batch: CrystalBatch, seed: int) -> list[dict[str, Any]]:
        torch.manual_seed(seed)
        rows = self._sur.score_batch(
            batch, relax=self.relax, max_steps=self.relax_steps, fmax=self.fmax
        )
        return [
            {k: (float(v) if isinstance(v, int | float) else v) for k, v in dict(r).items()}
            for r in rows
        ]

    def update(self, structures: list, labels: list[dict[str, float]]) -> str:
        fn = getattr(self._sur, "update_predictors", None)
        if fn is None:
            return self.model_version
        self.model_version = str(fn(structures, labels))
        return self.model_version


def finite(x: Any) -> float | None:
    """``float(x)`` or None for NaN / inf / non-numbers (JSON- and SQL-safe)."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
