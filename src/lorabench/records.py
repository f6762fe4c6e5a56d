"""The records lorabench writes and reads, typed in one place.

A run's ``result.json`` (:class:`RunResult`), a sweep store's trial row (:class:`TrialRow`), a row of a
sweep's summary (:class:`SummaryRow`, with its learning-rate :class:`CurvePoint`\\ s) and a Hessian
measurement (:class:`HessianResult`) are JSON objects; their keys and value types are declared here, and
every status is a :class:`Status`. Nothing here imports torch.

``SCHEMA_VERSION`` is written into every ``result.json`` and into every sweep store. It changes when a
recorded field changes meaning or a run-config field is added (which changes trial keys); a resume
refuses a store of another version instead of mixing old and new trials.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NotRequired, TypedDict, cast

SCHEMA_VERSION = 4


class Status(StrEnum):
    """Where a run or trial stands. A ``StrEnum``: it compares equal to, and serialises as, its value."""

    PENDING = "pending"
    RUNNING = "running"
    OK = "ok"
    DIVERGED = "diverged"  # the loss became non-finite or grew past diverge_factor × its first value
    COLLAPSED = "collapsed"  # training stopped moving: a non-finite gradient, or zero gradients step after step
    FAILED = "failed"
    OOM = "oom"

    @property
    def is_finished(self) -> bool:
        """A final status: the trial will not run again."""
        return self in FINISHED

    @property
    def is_bad(self) -> bool:
        """Finished without a final accuracy."""
        return self in BAD


FINISHED = frozenset({Status.OK, Status.DIVERGED, Status.COLLAPSED, Status.FAILED, Status.OOM})
BAD = (Status.DIVERGED, Status.COLLAPSED, Status.FAILED, Status.OOM)  # in the order reports list them


class Metrics(TypedDict):
    """An evaluation's figures. ``accuracy`` is the task's headline figure: a classifier's accuracy, or for a
    generative task the mean of its evaluation sets' accuracies (``sets``); ``macro_f1`` is None there."""

    accuracy: float
    macro_f1: float | None
    accuracy_ci: NotRequired[list[float]]  # 95% bootstrap interval of the accuracy over the evaluated examples
    sets: NotRequired[dict[str, float]]
    details: NotRequired[dict[str, dict[str, float]]]  # a set's further figures (IFEval: its four accuracies)


class BestMetrics(TypedDict):
    """The best evaluation of a run (None before the first)."""

    accuracy: float | None
    macro_f1: float | None
    step: int | None


class LaneResult(TypedDict):
    """What the training loop measured for one run: metrics and cost."""

    status: Status
    method: str
    steps_done: int
    final: Metrics | None
    best: BestMetrics
    train_seconds: float
    samples_per_second: float | None
    eval_seconds: float
    eval_samples_per_second: float | None
    generation_tokens_per_second: float | None  # new tokens per second of evaluation decoding (generative tasks)
    peak_memory_mb: float | None
    memory_kind: str
    fused: int  # how many runs trained together (1: alone); cost columns are then shares of the group's
    trainable_params: int
    tokens_seen: int
    one_class: bool  # its last dev predictions were all one class (a constant predictor): degenerate
    majority: float | None  # the validation split's majority-class accuracy (classification), the baseline
    held_out: dict[str, Metrics]  # metrics on held-out splits (e.g. "test"), measured once after training
    # held-out splits NOT computed after training (a sweep's trial): its trained parameters are kept in
    # trainable.safetensors, and the sweep's held-out pass evaluates them only at each group's chosen setting
    held_out_deferred: list[str]
    train_loss_last: float | None
    error: str | None
    artefact_errors: list[str]  # writes that failed (predictions, adapter, result.json); the run itself stands


class RunResult(LaneResult):
    """``result.json``: the loop's measurements, the resolved config, the data's labels and provenance (written in
    the key order of :func:`run_result`)."""

    schema_version: int
    config: dict[str, Any]
    counts: dict[str, Any]  # the task's data: label counts per split, or examples (and those without loss) per set
    provenance: dict[str, Any]
    run_dir: str


def run_result(lane: LaneResult, *, config: dict[str, Any], counts: dict[str, Any],
               provenance: dict[str, Any], run_dir: str) -> RunResult:
    """The one place a ``result.json`` is assembled (key order as written)."""
    body = {k: v for k, v in lane.items() if k not in ("status", "method")}
    # a plain dict, cast: mypy cannot check a TypedDict literal that spreads another TypedDict's remaining keys
    return cast(RunResult, {"schema_version": SCHEMA_VERSION, "status": lane["status"], "method": lane["method"],
                            "config": config, **body, "counts": counts, "provenance": provenance,
                            "run_dir": run_dir})


class TrialRow(TypedDict):
    """One trial of a sweep store."""

    key: str
    grp: str  # the JSON of the trial's group: method and every axis but lr and seed
    method: str
    lr: float
    seed: int
    axes: dict[str, Any]
    config: dict[str, Any]
    status: Status
    owner: str | None
    heartbeat: float | None
    started: float | None
    finished: float | None
    step: int
    attempts: int
    result: RunResult | None
    error: str | None


class Stat(TypedDict):
    mean: float
    std: float | None  # the sample std (ddof = 1) over seeds; None with one seed


class CurvePoint(TypedDict):
    """One point of a group's learning-rate curve: its trials at one rate (and one value of any second
    learning-rate axis), over the seeds; see :mod:`lorabench.sweep.curves` for the rule on failed seeds."""

    lr: float
    paired: NotRequired[dict[str, float]]  # the second learning-rate axes' values (e.g. LoRA+'s lr_b)
    accuracy: Stat | None  # over the seeds that finished ok; None if none did
    macro_f1: Stat | None  # None also for a generative task
    sets: NotRequired[dict[str, Stat]]  # a generative task's evaluation sets
    seeds: int
    statuses: list[str]  # the distinct statuses, sorted
    n_ok: int  # seeds that finished ok
    counts: dict[str, int]  # seeds by status
    axes: dict[str, Any]


class SummaryRow(TypedDict):
    """A group's best point and cost, as ``lorabench best`` shows it (groups with a trial that finished ok)."""

    group: dict[str, Any]
    method: str
    best_lr: float
    lambda_max: float | None
    axes: dict[str, Any]
    accuracy: Stat  # the task's headline figure (a generative task: the mean over its sets)
    macro_f1: Stat | None
    sets: NotRequired[dict[str, Stat]]
    details: NotRequired[dict[str, dict[str, Stat]]]  # a set's further figures over seeds (HumanEval plus …)
    seeds: int
    test: Stat | None  # held-out test accuracy over the ok seeds at the best setting (chosen on validation)
    majority: float | None  # the validation split's majority-class accuracy
    degenerate: int  # ok seeds at the best setting that predict a single class
    train_seconds: float | None  # costs from runs that trained alone (cost_source); None if none did
    samples_per_second: float | None
    peak_memory_mb: float | None
    memory_kind: str | None
    cost_source: str  # "trials" (they trained alone), "cost pass" (timed alone afterwards) or "none"
    final_pass: NotRequired[dict[str, Any]]  # the best setting trained again alone with the sweep's `final:` overrides
    trainable_params: int | None
    fused: int
    trials: int
    grid_trials: NotRequired[int | None]  # the full grid's trials for this group (what a strategy saves against)
    prediction: NotRequired[dict[str, Any]]  # the rate λ_max predicted from the reference's best, and how it held
    curve: list[CurvePoint]


class HessianBlock(TypedDict):
    block: str
    path: str | None
    layer: int | None
    module: str | None
    params: int
    parameters: list[str]
    lambda_max: float
    lambda_min: float
    max: dict[str, Any]  # the Lanczos record of each end: converged, hvps, residual, history
    min: dict[str, Any]
    hvps: int
    graphs_cached: bool
    seconds: float
    relative_rates: NotRequired[dict[str, float]]  # parameter → rate / lr, where the operator was S^½ H S^½


class HessianResult(TypedDict):
    """``lorabench hessian``'s result: λ_max / λ_min of the summary block, and every block's."""

    method: str
    lambda_max: float
    lambda_min: float
    summary_block: str
    samples: int
    loss_terms: int
    loss: float
    blocks: list[HessianBlock]
    hvps: int
    seconds: float
    device: str
    dtype: str
    hessian: dict[str, Any]  # the HessianConfig used
    config: dict[str, Any]
    data_files: dict[str, dict[str, str]]
