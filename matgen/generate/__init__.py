"""matgen.generate: sampling crystals from a checkpoint (the service behind ``matgen sample``,
``matgen.sample`` and the campaign generator); the algorithms are in :mod:`matgen.diffusion`.

Public API:
    generate(out, checkpoint, num, ...) -> SampleResult: sampling to extxyz, streamed batch by
        batch. sample_structures(num, ...) -> list of pymatgen Structures (``matgen.sample``).
    SampleSpec: the options of both (one home for the defaults: the shipped model, de novo,
        the 1000-step predictor-corrector).
    plan_sampling / sample_batches / SamplePlan / SampledBatch / frame_info / batch_order:
        the steps of a run, for callers that consume batches themselves (a multi-batch plan
        is batched by atom count; ``SampledBatch.index`` gives input-order indices).
    Requests: Request, build_requests, expand_formula, requests_from_formulas,
        requests_from_csv, requests_de_novo; SampleInputError (bad input, one line).
    Composition-first de novo (``SampleSpec.denovo``): the checkpoint's composition model
        draws each cell's atoms, the denoiser their structure (matgen.generate._compositions;
        the shipped model's default).
    Consensus: consensus_pick (the candidate of one composition the most others match; the
        ``consensus`` option of SampleSpec).
    Targets: ConditionTarget, parse_condition (``KEY=VALUE | LO:HI | :HI | LO:``).
    Checkpoints: DEFAULT_MODEL_DIR (the shipped model), load_for_sampling, cached_diffusion,
        resolve_checkpoint, latest_checkpoint, step_checkpoints, read_metadata, weights_id,
        and STATE, the training-state file name (the model files are matgen.models.WEIGHTS / META).

Layer: below :mod:`matgen.training` (which writes the checkpoints this layer reads and trains
the diffusion it caches), above crystal / data / nn / diffusion / models / guidance.
"""

from __future__ import annotations

from matgen.generate._checkpoints import (
    DEFAULT_MODEL_DIR,
    STATE,
    cached_diffusion,
    latest_checkpoint,
    load_for_sampling,
    read_metadata,
    resolve_checkpoint,
    step_checkpoints,
    weights_file,
    weights_id,
)
from matgen.generate._consensus import consensus_pick
from matgen.generate._generate import (
    SampledBatch,
    SamplePlan,
    SampleResult,
    batch_order,
    build_requests,
    choose_sampler,
    frame_info,
    generate,
    plan_sampling,
    resolve_device,
    sample_batches,
    sample_structures,
)
from matgen.generate._requests import (
    Request,
    SampleDataError,
    SampleInputError,
    expand_formula,
    requests_de_novo,
    requests_from_csv,
    requests_from_formulas,
)
from matgen.generate._spec import DEFAULT_STEPS, SampleSpec, default_steps
from matgen.generate._targets import ConditionTarget, parse_condition

__all__ = [
    "DEFAULT_MODEL_DIR",
    "DEFAULT_STEPS",
    "STATE",
    "ConditionTarget",
    "Request",
    "SampleDataError",
    "SampleInputError",
    "SamplePlan",
    "SampleResult",
    "SampleSpec",
    "SampledBatch",
    "batch_order",
    "build_requests",
    "cached_diffusion",
    "choose_sampler",
    "consensus_pick",
    "default_steps",
    "expand_formula",
    "frame_info",
    "generate",
    "latest_checkpoint",
    "load_for_sampling",
    "parse_condition",
    "plan_sampling",
    "read_metadata",
    "requests_de_novo",
    "requests_from_csv",
    "requests_from_formulas",
    "resolve_checkpoint",
    "resolve_device",
    "sample_batches",
    "sample_structures",
    "step_checkpoints",
    "weights_file",
    "weights_id",
]
