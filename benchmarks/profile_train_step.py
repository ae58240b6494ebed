"""Where a training step's time goes: torch.profiler around the real ``matgen train`` loop.

Issue 16 asks for a training step that is not launch bound (GPU >= 85 % busy, 2.5x today's
crystals/s). This runs ``matgen.training.train`` unchanged (data loader workers, bf16 autocast,
the per-step host sync, clipping, AdamW, EMA) and profiles ``--steps`` steps after
``--warmup``. It records per step: wall time, the summed time of device kernels (so the GPU's
busy share), kernel launches, host syncs, and the ops that cost most on the device and on the
host. Runs on CPU too (host numbers only).

    python benchmarks/profile_train_step.py --config configs/train/mp20_dense.yaml \\
        --out benchmarks/results/profile_train_step_h200.json [--set model.size_groups=1] \\
        [--trace /tmp/trace.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from torch.profiler import ProfilerActivity, profile, schedule

from matgen.training import TrainConfig, train
from matgen.training import _loop as loop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation import merged_config


def _override(raw: dict, items: list[str]) -> dict:
    """``raw`` with ``a.b=value`` items applied (values parsed as YAML)."""
    pairs = (item.partition("=") for item in items)
    return merged_config(raw, {key: yaml.safe_load(value) for key, _, value in pairs})


def _device_us(evt) -> float:
    for name in ("self_device_time_total", "self_cuda_time_total"):
        v = getattr(evt, name, None)
        if v is not None:
            return float(v)
    return 0.0


def summarise(prof, steps: int, wall_s: list[float], top: int = 15) -> dict:
    """Per-step numbers from a finished profile of ``steps`` steps with wall times ``wall_s``."""
    avg = prof.key_averages()
    kernels = [e for e in prof.events() if str(getattr(e, "device_type", "")).endswith("CUDA")]
    dev_us = sum(_device_us(e) for e in avg)
    wall_ms = 1e3 * sum(wall_s) / max(1, len(wall_s))

    def row(e, dev: bool) -> dict:
        us = _device_us(e) if dev else float(e.self_cpu_time_total)
        return {"name": e.key[:120], "ms_per_step": round(us / 1e3 / steps, 3),
                "calls_per_step": round(e.count / steps, 1)}

    by = {e.key: e for e in avg}
    launches = sum(by[k].count for k in by if k in ("cudaLaunchKernel", "cuLaunchKernel",
                                                    "cudaLaunchKernelExC", "cuLaunchKernelEx"))
    syncs = sum(by[k].count for k in by if "Synchronize" in k or k == "aten::_local_scalar_dense")
    return {
        "steps": steps,
        "wall_ms_per_step": round(wall_ms, 3),
        "device_kernel_ms_per_step": round(dev_us / 1e3 / steps, 3),
        "gpu_busy_share": round(dev_us / 1e3 / steps / wall_ms, 3) if dev_us and wall_ms else None,
        "kernels_per_step": round(len(kernels) / steps, 1),
        "kernel_launch_calls_per_step": round(launches / steps, 1),
        "host_syncs_per_step": round(syncs / steps, 1),
        "top_device_ops": [row(e, True) for e in sorted(avg, key=_device_us, reverse=True)[:top]
                           if _device_us(e) > 0],
        "top_host_ops": [row(e, False) for e in sorted(avg, key=lambda e: e.self_cpu_time_total,
                                                       reverse=True)[:top]],
    }


def profile_training(cfg: TrainConfig, data: str | None, warmup: int, steps: int,
                     trace: str | None = None) -> dict:
    """Train ``warmup + steps + 1`` steps and profile the last ``steps`` but one."""
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    wall: list[float] = []
    state = {"n": 0, "t": None}
    original = loop._step

    def timed_step(*args, **kwargs):
        out = original(*args, **kwargs)  # ends with a host sync: wall time per step is exact
        now = time.perf_counter()
        if state["t"] is not None and warmup < state["n"] <= warmup + steps:
            wall.append(now - state["t"])
        state["t"] = now
        state["n"] += 1
        prof.step()
        return out

    sched = schedule(wait=warmup, warmup=1, active=steps, repeat=1)
    c = cfg.model_copy(update={"max_steps": warmup + steps + 2, "log_every": 10**6,
                               "checkpoint_every": 10**9,
                               "optim": cfg.optim.model_copy(update={"schedule": "steps"})})
    with tempfile.TemporaryDirectory() as tmp, \
            profile(activities=acts, schedule=sched, record_shapes=False) as prof:
        loop._step = timed_step
        try:
            train(c, data=data, out=tmp, progress=False, log=None)
        finally:
            loop._step = original
    if trace:
        prof.export_chrome_trace(trace)
    out = summarise(prof, steps, wall)
    out["crystals_per_s"] = round(c.batch_size / (out["wall_ms_per_step"] / 1e3), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/train/mp20_dense.yaml")
    ap.add_argument("--data", default=None, help="training data (default: the config's)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, e.g. model.size_groups=1 (repeatable)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--trace", default=None, help="write a Chrome trace here")
    ap.add_argument("--out", default=None, help="results JSON (default: print only)")
    a = ap.parse_args(argv)
    raw = _override(yaml.safe_load(Path(a.config).read_text()), a.set)
    cfg = TrainConfig.model_validate(raw)
    res = {
        "what": "profile of matgen train steps (benchmarks/profile_train_step.py)",
        "config": a.config, "overrides": a.set, "batch_size": cfg.batch_size,
        "machine": {"platform": platform.platform(), "torch": torch.__version__,
                    "device": torch.cuda.get_device_name(0) if torch.cuda.is_available()
                    else "cpu", "threads": torch.get_num_threads()},
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        **profile_training(cfg, a.data, a.warmup, a.steps, a.trace),
    }
    text = json.dumps(res, indent=1)
    if a.out:
        Path(a.out).write_text(text)
    print(json.dumps({k: v for k, v in res.items() if not k.startswith("top_")}, indent=1))
    for r in res["top_device_ops"][:8] or res["top_host_ops"][:8]:
        print(f"  {r['ms_per_step']:8.3f} ms  x{r['calls_per_step']:<6} {r['name']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
