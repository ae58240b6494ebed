"""The per-frame info a sampling run writes, and the options it records (only away from
their defaults, so that earlier runs' records and fingerprints stay as they were)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matgen.generate._generate import SamplePlan
    from matgen.generate._requests import Request


def frame_info(plan: SamplePlan, lo: int, chunk: list[Request],
               index: list[int] | None = None) -> dict[str, list]:
    """The per-frame info of requests ``lo .. lo + len(chunk)`` of ``plan`` (see
    :func:`generate`); ``index``: their input-order indices for the ``sample_id`` (default
    ``lo ..``)."""
    spec, n = plan.spec, len(chunk)
    index = list(range(lo, lo + n)) if index is None else index
    info: dict[str, list] = {
        "sample_id": [f"{plan.checkpoint_id}-s{spec.seed}-{i}" for i in index],
        "task": [spec.task] * n,
        "checkpoint": [plan.checkpoint_id] * n,
        "seed": [spec.seed] * n,
        "sampler": [plan.sampler] * n,
        "steps": [plan.steps] * n,
        "guidance": [float(spec.guidance)] * n,
    }
    if spec.task == "csp" or plan.denovo == "composition":
        info["composition"] = [r.composition for r in chunk]
    if plan.targets:
        info["conditions"] = [";".join(s.describe() for s in plan.targets)] * n
        for name, v in plan.values.items():
            info[f"target_{name}"] = [float(x) for x in v[lo : lo + n]]
    if spec.chemsys:
        info["chemsys"] = [spec.chemsys] * n
    if getattr(plan.diffusion, "is_flow", False):  # pc and fast both integrate the flow ODE
        info["flow_slope"] = [float(plan.diffusion.cfg.flow_slope)] * n
        for name, value in set_options(plan, _CLASH_OPTIONS).items():
            info[name] = [value] * n
    if plan.denovo == "composition":
        info["denovo"] = ["composition"] * n
        info["composition_temperature"] = [plan.composition_temperature] * n
    elif spec.task == "gen":
        tt = getattr(getattr(plan.diffusion, "cfg", None), "type_temperature", 1.0)
        info["type_temperature"] = [float(tt)] * n
        for name, value in set_options(plan, _TYPE_OPTIONS).items():
            info[name] = [value] * n
    return info


#: Sampling options that frames and fingerprints record only away from these defaults (so the
#: fingerprints of runs from before each option existed stay as they were).
_OPTION_DEFAULTS = {"clash_scale": 0.0, "clash_floor": 0.0, "type_order": "random",
                    "type_remask": 0.0}
_CLASH_OPTIONS = ("clash_scale", "clash_floor")  # flow models only (others have them at 0)
_TYPE_OPTIONS = ("type_order", "type_remask")  # de novo only


def set_options(plan: SamplePlan, names=tuple(_OPTION_DEFAULTS)) -> dict:
    """The plan's options among ``names`` that differ from :data:`_OPTION_DEFAULTS`."""
    cfg = getattr(plan.diffusion, "cfg", None)
    values = {k: getattr(cfg, k, _OPTION_DEFAULTS[k]) for k in names}
    return {k: v for k, v in values.items() if v != _OPTION_DEFAULTS[k]}
