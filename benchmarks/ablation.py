"""Equal-wall-budget ablation harness for the generator (issue: generator at the field's level).

Runs several ``matgen train`` variants at once on the GPUs of one machine (several processes per
GPU: one launch-bound run leaves an H200 ~40% idle), each for the same wall budget, then scores
every run the same way: CSP on the first ``--eval-rows`` rows of mp20_reduced val, one sample,
``matgen sample`` (predictor-corrector 1000 steps and the fast 50-step sampler) and
``matgen evaluate --task csp``. One JSON row per run: config, GPU share, steps, crystals seen,
train / val loss, match rate, RMSE, throughput.

Schedule: every run trains with ``optim.schedule: time`` (unless its overrides say otherwise):
its cosine ends when the budget is spent, so every run ends with a decayed learning rate inside
the same wall time at whatever speed it gets. ``--probe-s S`` (off by default) first runs all
variants at once for S seconds and plans step-based schedules from their measured steps/s
instead (round 2's probe measured 6.5 steps/s for a run that then went at 8.6 and ended its
15-minute budget after 11).

    python benchmarks/ablation.py --set benchmarks/ablations/round1.yaml --work /tmp/abl \
        --out /tmp/abl/ablation.json

A set file: ``base`` (a train config path), ``minutes`` (budget), optional ``defaults``
(overrides for every variant) and ``variants``: ``{name: {gpu: 0, overrides: {dotted.key: v},
samplers: [pc, "fast:50"], init: CHECKPOINT_DIR}}`` (``gpu`` is taken modulo the GPUs present;
``samplers`` overrides ``--samplers`` for that run; ``init``, optional, starts the run from a
checkpoint's weights, as ``matgen train --init``; ``nproc: N``, optional, trains it with DDP over N
GPUs from ``gpu`` on (``torch.distributed.run``; the config's batch_size stays the global batch,
so set it N times larger for weak scaling; on the CPU N gloo ranks)).
Runs on CPU too (``--device cpu``, tiny budgets; the tests do that).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml


def merged_config(base: dict, overrides: dict[str, Any]) -> dict:
    """``base`` with dotted-key ``overrides`` applied (``model.hidden: 512``)."""
    cfg = json.loads(json.dumps(base))
    for key, val in overrides.items():
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = val
    return cfg


def read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return list(csv.DictReader(path.open()))


def steps_per_s(rows: list[dict], skip: int = 1) -> float | None:
    """Steps/s between the ``skip``-th and the last logged row (drops start-up)."""
    if len(rows) < skip + 2:
        return None
    a, b = rows[skip], rows[-1]
    dt = float(b["elapsed_s"]) - float(a["elapsed_s"])
    return (int(b["step"]) - int(a["step"])) / dt if dt > 0 else None


def _gpu_count() -> int:
    try:
        import torch

        return max(1, torch.cuda.device_count())
    except Exception:  # noqa: BLE001 - no torch / no CUDA: one (virtual) device
        return 1


def _launch(cmd: list[str], gpu: int | None, log: Path, threads: int = 2,
            nproc: int = 1) -> subprocess.Popen:
    """Start ``cmd`` on GPU ``gpu`` (modulo the GPUs present; ``nproc`` GPUs from there for a
    DDP run) with ``threads`` CPU threads (several runs share the machine's cores)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, _gpu_ids(gpu, nproc)))
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _gpu_ids(gpu: int, nproc: int) -> list[int]:
    """GPU ``gpu`` and, for a DDP run, the next ``nproc - 1``, modulo the GPUs present."""
    return [(gpu + k) % _gpu_count() for k in range(nproc)]


def _nproc(v: dict) -> int:
    """A variant's DDP ranks (``nproc``, default 1)."""
    n = v.get("nproc", 1)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"nproc must be a positive integer, got {n!r}")
    return n


def _check_init(v: dict) -> None:
    """A variant's ``init`` must hold a checkpoint before anything trains (a lineage's weights
    that did not land would otherwise cost a device call: round 30's e25_sub6)."""
    init = v.get("init")
    if not init:
        return
    from matgen.generate import resolve_checkpoint  # what ``matgen train --init`` resolves

    try:
        resolve_checkpoint(init)
    except FileNotFoundError as e:
        raise ValueError(f"init {init}: {e}") from None


def _gpus(v: dict) -> set[int]:
    """The GPUs a variant trains on."""
    return set(_gpu_ids(v.get("gpu", 0), _nproc(v)))


def _gpu_share(v: dict, variants: dict) -> float:
    """The variant's share of its busiest GPU (1 / the runs training on it)."""
    return 1.0 / max(sum(1 for w in variants.values() if g in _gpus(w)) for g in _gpus(v))


def _wait(procs: dict[str, subprocess.Popen], timeout_s: float | None = None) -> dict[str, int]:
    """Exit codes; processes still running ``timeout_s`` after the call are killed (-9)."""
    deadline = None if timeout_s is None else time.time() + timeout_s
    codes = {}
    for k, p in procs.items():
        try:
            left = None if deadline is None else max(1.0, deadline - time.time())
            codes[k] = p.wait(timeout=left)
        except subprocess.TimeoutExpired:
            p.kill()
            codes[k] = p.wait()
    return codes


def sampler_spec(s: str) -> tuple[list[str], str]:
    """``kind[:steps[:slope]]`` -> (``matgen sample`` options, a short tag): ``fast:50:5`` is
    the fast sampler, 50 steps, flow anti-annealing slope 5 (``--flow-slope``)."""
    kind, steps, slope = (s.split(":") + ["", ""])[:3]
    opts = ["--sampler", kind] + (["--steps", steps] if steps else [])
    opts += ["--flow-slope", slope] if slope else []
    return opts, kind + steps + (f"s{slope}" if slope else "")


def _samplers_of(v: dict, default: list[str]) -> list[str]:
    """A variant's samplers: its own ``samplers`` list or the default (``kind[:steps]``)."""
    return list(v.get("samplers") or default)


def train_all(variants: dict, work: Path, data: str | None, minutes: float, max_steps: dict,
              device: str, suffix: str) -> dict[str, int]:
    procs = {}
    for name, v in variants.items():
        run = work / name
        n = _nproc(v)
        ddp = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"]
        cmd = [sys.executable, *(ddp if n > 1 else []), "-m", "matgen", "train",
               "--config", str(run / "config.yaml"),
               "--out", str(run / suffix), "--max-steps", str(max_steps[name]),
               "--max-time", f"{minutes:.3f}", "--no-progress"]
        if data:
            cmd += ["--data", data]
        if v.get("init"):  # continue from a checkpoint's weights (fresh optimizer and warm-up)
            cmd += ["--init", str(v["init"])]
        gpu = v.get("gpu", 0) if device == "cuda" else None
        procs[name] = _launch(cmd, gpu, run / f"{suffix}.log", nproc=n)
    return _wait(procs)


def _seed_tag(tag: str, seed: int) -> str:
    """File tag of one sampler and seed: seed 0 keeps the plain tag (older rounds' files)."""
    return tag if seed == 0 else f"{tag}_seed{seed}"


def evaluate_all(variants: dict, work: Path, ref: Path, samplers: list[str], device: str,
                 batch: int, workers: int, timeout_s: float | None = None,
                 seeds: tuple[int, ...] = (0,)) -> None:
    """Sample CSP for ``ref``'s compositions with each sampler and seed, all runs at once (killed
    after ``timeout_s``), then score what was written."""
    procs = {}
    for name, v in variants.items():
        ck = work / name / "run" / "checkpoints" / "last"
        if not ck.exists():
            continue
        for s in _samplers_of(v, samplers):
            opts, tag = sampler_spec(s)
            for seed in seeds:
                out = work / name / f"csp_{_seed_tag(tag, seed)}.extxyz"
                cmd = [sys.executable, "-m", "matgen", "sample", "--checkpoint", str(ck), "--task",
                       "csp", "--compositions-from", str(ref), "--num", "1", "--seed", str(seed),
                       "--batch-size", str(batch), "--no-progress", "--out", str(out), *opts]
                gpu = v.get("gpu", 0) if device == "cuda" else None
                procs[f"{name}/{s}/{seed}"] = _launch(cmd, gpu, out.with_suffix(".sample.log"))
    codes = _wait(procs, timeout_s)
    print(f"[ablation] sampling exit codes {codes}", flush=True)
    procs = {}
    for name, v in variants.items():
        for s in _samplers_of(v, samplers):
            for seed in seeds:
                gen = work / name / f"csp_{_seed_tag(sampler_spec(s)[1], seed)}.extxyz"
                if gen.is_file():
                    cmd = [sys.executable, "-m", "matgen", "evaluate", "--task", "csp",
                           "--generated", str(gen), "--reference", str(ref),
                           "--workers", str(workers), "--out", str(gen.with_suffix(".json"))]
                    procs[f"{name}/{s}/{seed}"] = _launch(cmd, None, gen.with_suffix(".eval.log"))
    _wait(procs)


def pooled(metrics: list[dict]) -> dict:
    """Validation metrics pooled over sampling seeds: match rate over all references, RMSE over
    all matched structures (each seed's RMSE weighted by its matches)."""
    done = [m for m in metrics if m.get("match_rate") is not None]
    if not done:
        return {}
    refs = [m.get("num_references") or 1 for m in done]
    hits = [m["match_rate"] * n for m, n in zip(done, refs, strict=True)]
    out = {"match_rate": sum(hits) / sum(refs), "seeds": len(done),
           "num_references": sum(refs)}
    rm = [(m["rmse"], h) for m, h in zip(done, hits, strict=True) if m.get("rmse") is not None]
    if rm and sum(h for _, h in rm) > 0:
        out["rmse"] = sum(r * h for r, h in rm) / sum(h for _, h in rm)
    return out


def _metric(path: Path) -> dict:
    if not path.is_file():
        return {}
    d = json.loads(path.read_text())
    m = d.get("metrics", d)
    return {k: v for k, v in m.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def collect(variants: dict, work: Path, cfg_set: dict, samplers: list[str], probe: dict,
            seeds: tuple[int, ...] = (0,)) -> list:
    rows = []
    for name, v in variants.items():
        run = work / name
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        metrics = read_metrics(run / "run" / "metrics.csv")
        last = metrics[-1] if metrics else {}
        vals = [float(r["val_loss"]) for r in metrics if r.get("val_loss")]
        step = int(last.get("step", 0) or 0)
        row = {
            "name": name,
            "gpu": v.get("gpu", 0) % _gpu_count(),
            "gpu_share": _gpu_share(v, variants),
            "nproc": _nproc(v),
            "samplers": _samplers_of(v, samplers),
            "overrides": v.get("overrides", {}), "init": v.get("init"), "steps": step,
            "crystals_seen": step * int(cfg.get("batch_size", 0)),
            "elapsed_s": float(last.get("elapsed_s", 0) or 0),
            "steps_per_s": steps_per_s(metrics), "probe_steps_per_s": probe.get(name),
            "train_loss": float(last["loss"]) if last else None,
            "val_loss": vals[-1] if vals else None,
        }
        meta = run / "run" / "checkpoints" / "last" / "model.json"
        if meta.is_file():
            m = json.loads(meta.read_text())
            row["denoiser"] = m.get("denoiser")
        for s in _samplers_of(v, samplers):
            tag = sampler_spec(s)[1]
            row[f"csp_{tag}"] = _metric(run / f"csp_{tag}.json")
            if len(seeds) > 1:  # selection uses every seed: one seed's 1,000 rows are noisy
                row[f"csp_{tag}_pooled"] = pooled(
                    [_metric(run / f"csp_{_seed_tag(tag, k)}.json") for k in seeds])
        rows.append(row)
    return rows


def best_sampler(result: dict, name: str) -> str | None:
    """The sampler spec with the highest validation match rate of run ``name`` (pooled over
    seeds when several were sampled; ties: the first listed), or None when none was scored."""
    row = next((r for r in result["runs"] if r["name"] == name), None)
    best, rate = None, -1.0
    for spec in (row or {}).get("samplers", []):
        tag = f"csp_{sampler_spec(spec)[1]}"
        m = (row.get(f"{tag}_pooled") or row.get(tag, {})).get("match_rate")
        if m is not None and m > rate:
            best, rate = spec, m
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", required=True, help="ablation set YAML")
    ap.add_argument("--work", required=True, help="work folder (one sub-folder per run)")
    ap.add_argument("--out", required=True, help="results JSON")
    ap.add_argument("--data", default=None, help="training data path (default: the config's)")
    ap.add_argument("--reference", default=None, help="CSP reference CSV (default: mp20 val)")
    ap.add_argument("--eval-rows", type=int, default=1000)
    ap.add_argument("--samplers", default="pc,fast:50")
    ap.add_argument("--eval-seeds", default="0",
                    help="comma-separated sampling seeds; with several, selection pools them")
    ap.add_argument("--probe-s", type=float, default=0.0,
                    help="probe seconds for step-based schedules (0: time-driven cosine)")
    ap.add_argument("--minutes", type=float, default=None, help="override the set's budget")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--sample-batch", type=int, default=1000)
    ap.add_argument("--eval-workers", type=int, default=4)
    ap.add_argument("--sample-timeout", type=float, default=None,
                    help="seconds after which unfinished sampling processes are killed")
    ap.add_argument("--only", default=None, help="comma-separated variant names")
    ap.add_argument("--stage", default="all", choices=["all", "train", "eval", "check"],
                    help="train only, evaluate finished runs only, or both; check: only "
                         "validate the set (variants, nproc, init checkpoints), e.g. on the CPU "
                         "before a device call")
    a = ap.parse_args(argv)

    spec = yaml.safe_load(Path(a.set).read_text())
    base = yaml.safe_load(Path(spec["base"]).read_text())
    minutes = a.minutes if a.minutes is not None else float(spec["minutes"])
    variants = dict(spec["variants"])
    if a.only:
        only = [k.strip() for k in a.only.split(",") if k.strip()]
        unknown = [k for k in only if k not in variants]
        if unknown:
            print(f"ablation: --only names {', '.join(unknown)}, not a variant of {a.set}",
                  file=sys.stderr)
            return 2
        variants = {k: v for k, v in variants.items() if k in only}
    for name, v in variants.items():
        try:
            _nproc(v)
            if a.stage != "eval":
                _check_init(v)
        except ValueError as e:
            print(f"ablation: variant {name} of {a.set}: {e}", file=sys.stderr)
            return 2
    if a.stage == "check":
        print(f"ablation: {a.set}: {', '.join(variants)} ready")
        return 0
    work = Path(a.work)
    for name, v in variants.items():
        (work / name).mkdir(parents=True, exist_ok=True)
        over = {**spec.get("defaults", {}), **(v.get("overrides") or {})}
        if a.probe_s <= 0:
            over = {"optim.schedule": "time", **over}
        v["overrides"] = over
        cfg = merged_config(base, over)
        (work / name / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    t0 = time.time()
    probe: dict[str, float | None] = {}
    probe_file = work / "probe.json"
    if a.stage == "eval":
        probe = json.loads(probe_file.read_text()) if probe_file.is_file() else {}
    elif a.probe_s > 0:
        train_all(variants, work, a.data, a.probe_s / 60.0, dict.fromkeys(variants, 10**7),
                  a.device, "probe")
        for name in variants:
            probe[name] = steps_per_s(read_metrics(work / name / "probe" / "metrics.csv"))
    if a.stage != "eval":
        probe_file.write_text(json.dumps(probe))
        steps = ({n: max(50, int((probe.get(n) or 1.0) * minutes * 60 * 0.97)) for n in variants}
                 if a.probe_s > 0 else dict.fromkeys(variants, 10**7))
        print(f"[ablation] probe {time.time() - t0:.0f}s: {probe} -> steps {steps}", flush=True)
        codes = train_all(variants, work, a.data, minutes, steps, a.device, "run")
        print(f"[ablation] trained {time.time() - t0:.0f}s: exit codes {codes}", flush=True)
        if a.stage == "train":  # a run that failed fails the stage (the driver logs the code)
            return 0 if all(c == 0 for c in codes.values()) else 1

    ref = Path(a.reference) if a.reference else None
    if ref is None:
        from matgen.data import resolve_source

        ref = resolve_source("mp20", "val")
    sub = work / f"reference_{a.eval_rows}.csv"
    with ref.open() as fin, sub.open("w", newline="") as fout:
        r = csv.reader(fin)
        w = csv.writer(fout)
        for i, row in enumerate(r):
            if i > a.eval_rows:
                break
            w.writerow(row)
    samplers = [s for s in a.samplers.split(",") if s]
    seeds = tuple(int(k) for k in a.eval_seeds.split(",") if k.strip())
    evaluate_all(variants, work, sub, samplers, a.device, a.sample_batch, a.eval_workers,
                 a.sample_timeout, seeds)
    rows = collect(variants, work, spec, samplers, probe, seeds)
    result = {
        "what": f"equal-wall-budget generator ablation: CSP on the first {a.eval_rows} rows of "
                f"{ref.name} ({ref.parent.name}), 1 sample per seed",
        "set": a.set, "base": spec["base"], "minutes": minutes, "probe_s": a.probe_s,
        "eval_rows": a.eval_rows, "eval_seeds": list(seeds), "reference": str(ref),
        "samplers": samplers,
        "device": a.device, "total_s": round(time.time() - t0, 1), "runs": rows,
    }
    Path(a.out).write_text(json.dumps(result, indent=2))
    for row in rows:
        tags = {s: f"csp_{sampler_spec(s)[1]}" for s in _samplers_of(variants[row["name"]], samplers)}
        pcs = {s: row.get(f"{t}_pooled") or row.get(t, {}) for s, t in tags.items()}
        print(row["name"], row["steps"], row["val_loss"],
              {s: (m.get("match_rate"), m.get("rmse")) for s, m in pcs.items()}, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
