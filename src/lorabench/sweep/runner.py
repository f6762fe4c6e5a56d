"""``run_sweep``: propose trials with the strategy, run the pending ones, repeat until none is left.

Resuming is re-running the same command: finished trials are kept, trials left ``running`` by a
dead worker go back to pending, and the strategy proposes the same trials from the same results.

``hessian: true``: after the trials, each method's Hessian at init is measured once (see
``measure_hessians``) and kept in the store, so ``best`` can show its λ_max. ``strategy: hessian`` measures them
first, before any trial, since it proposes from them (:func:`lorabench.sweep.strategies.hessian`).
"""

from __future__ import annotations

import json
from collections import Counter
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from tqdm.auto import tqdm

from ..config import validate
from ..errors import ConfigError
from ..measure import free_memory
from ..files import atomic_write_text
from ..records import BAD, FINISHED, SCHEMA_VERSION, Status
from .config import Sweep
from .executors import run_local, run_ray
from .store import Store, default_url
from .schedule import fused_tasks
from .space import trial_key
from .held_out import evaluate_held_out
from .prediction import check_lambda
from .strategies import STRATEGIES, Strategy, at_best, hessian

if TYPE_CHECKING:
    import torch

    from ..hessian import HessianConfig


class Monitor(threading.Thread):
    """An overall bar and one line per running trial, read from the store once a second."""

    def __init__(self, store: Store, lines: int, enabled: bool) -> None:
        super().__init__(daemon=True)
        self.store, self.enabled, self.stop = store, enabled, threading.Event()
        self.total = tqdm(total=0, desc="sweep", unit="trial", disable=not enabled, position=0, dynamic_ncols=True)
        self.lines = [tqdm(total=1, bar_format="{desc}", position=i + 1, disable=not enabled, leave=False)
                      for i in range(lines)]

    def refresh(self) -> None:
        rows = self.store.rows()
        self.total.total = len(rows)
        self.total.n = sum(r["status"] in FINISHED for r in rows)
        self.total.refresh()
        running = sorted((r for r in rows if r["status"] is Status.RUNNING), key=lambda r: r["owner"] or "")
        for i, line in enumerate(self.lines):
            if i < len(running):
                r = running[i]
                line.set_description_str(f"  {r['owner']}: {r['method']} lr={r['lr']:.3g} seed={r['seed']} "
                                         f"step {r['step']}/{r['config']['steps']}")
            else:
                line.set_description_str("  idle")

    def run(self) -> None:
        while not self.stop.wait(1.0):
            if self.enabled:
                self.refresh()

    def close(self) -> None:
        self.stop.set()
        if self.enabled:
            self.refresh()
        for b in self.lines:
            b.close()
        self.total.close()


def measure_hessians(sweep: Sweep, store: Store, hcfg: HessianConfig, *,
                     log: Callable[[str], None] = lambda _: None, progress: bool = False) -> dict[str, Any]:
    """Each group's Hessian at init (``lorabench.hessian.measure`` with ``hcfg``), on the config of the group's
    first trial (its method and axes, the sweep's first seed), kept in the store's meta ``hessian`` keyed by the
    group. A group already measured with the same settings is not measured again; groups whose configs differ
    only in what the Hessian at init does not see (lr, steps, batching) share one measurement."""
    from ..hessian import measure

    settings = hcfg.model_dump(mode="json")
    first: dict[str, Any] = {}
    for t in sweep.trials:
        if t.seed == sweep.cfg.space.seeds[0]:
            first.setdefault(t.group, t.config)
    done: dict[str, Any] = {}
    for group, config in tqdm(first.items(), desc="λ_max per group", unit="group", disable=not progress,
                              leave=False, dynamic_ncols=True):
        known = (store.get_meta("hessian") or {}).get(group)
        if known is not None and known.get("hessian") == settings:
            continue
        key = json.dumps({k: v for k, v in config.items() if k not in HESSIAN_BLIND}, sort_keys=True)
        if key not in done:
            done[key] = measure(validate(config, sweep.source), hcfg, log=log)
        store.set_meta("hessian", {**(store.get_meta("hessian") or {}), group: done[key]})
    return store.get_meta("hessian") or {}


HESSIAN_BLIND = ("lr", "steps", "batch_size", "grad_accum", "warmup_steps", "warmup_ratio", "schedule", "eval_every",
                 "eval_batch_size", "save_adapter", "report_to", "tracker_project", "tracking_uri")  # no effect on the loss or the init


def hessian_strategy(sweep: Sweep, measured: dict[str, Any]) -> Strategy:
    """``strategy: hessian`` over ``measured`` (group → its Hessian result); a λ_max that is not positive and finite
    is a one-line error naming the method and block."""
    lambdas = {g: check_lambda(json.loads(g)["method"], h.get("summary_block", "?"), h.get("lambda_max"))
               for g, h in measured.items()}
    p = sweep.cfg.prediction
    return hessian(lambdas, reference=p.reference, exponent=p.exponent, reference_search=p.reference_search)


def trial_device(sweep: Sweep) -> torch.device:
    """Where the trials will run: CUDA unless the base config asks for the CPU or none is present."""
    import torch

    on_gpu = validate(sweep.base, sweep.source).device != "cpu" and torch.cuda.is_available()
    return torch.device("cuda" if on_gpu else "cpu")


def data_identity(sweep: Sweep) -> dict[str, str] | None:
    """The sha256 of the data files the sweep's trials read (resolved as a run resolves them); None for hub data
    or a file that is not there (its trials will say so)."""
    from ..tasks import data_files

    return data_files(validate(sweep.base, sweep.source))


def open_for(sweep: Sweep, out: Path, url: str, strategy: str) -> Store:
    """The store of ``out`` ready for ``sweep``: refused if it holds another sweep or another record schema;
    the sweep and its settings recorded; trials of dead workers back to pending."""
    store = Store(url)
    recorded = store.get_meta("sweep")
    if recorded is not None and recorded["base"] != sweep.base:
        raise ConfigError(f"{out}: holds a sweep of another base config; use a new folder")
    schema = store.get_meta("schema_version")
    if store.rows() and schema != SCHEMA_VERSION:  # its trial keys and records would not match this lorabench's
        raise ConfigError(f"{out}: its trials were recorded by a lorabench of record schema {schema or 1} "
                          f"(this one writes {SCHEMA_VERSION}); resume it with the lorabench that made it, "
                          "or use a new folder")
    store.set_meta("schema_version", SCHEMA_VERSION)
    data, known = data_identity(sweep), store.get_meta("data")
    if store.rows() and data and known and data != known:
        changed = ", ".join(f"{k} sha256 {str(known.get(k))[:12]}… → {str(data.get(k))[:12]}…" for k in data
                            if data.get(k) != known.get(k))
        raise ConfigError(f"{out}: its trials were trained on other data ({changed}); point the data back "
                          "(data.dir, LORABENCH_DATA_DIR or LORABENCH_DATA_ROOT) or use a new folder")
    if data:
        store.set_meta("data", data)
    store.set_meta("sweep", sweep.dump())
    store.set_meta("strategy", strategy)
    store.set_meta("prediction", sweep.cfg.prediction.model_dump(mode="json"))
    # the full grid's trials per group, against which a strategy saves
    store.set_meta("grid_trials", dict(Counter(t.group for t in sweep.trials)))
    atomic_write_text(out / "sweep.yaml", yaml.safe_dump(sweep.dump(), sort_keys=False))
    store.reclaim()
    return store


def adopt_finished(store: Store, out: Path, keys: list[str]) -> int:
    """Record as finished every pending trial among ``keys`` whose folder already holds a finished run (a store
    emptied, lost or new): its ``result.json`` is kept as it is, never rerun over. A folder whose config is not
    the trial's is refused."""
    adopted = 0
    for key in keys:
        path = out / "trials" / key / "result.json"
        if not path.is_file():
            continue
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: unreadable ({e}); move that folder away to rerun the trial") from None
        if trial_key(result.get("config") or {}) != key:
            raise ConfigError(f"{path}: holds another trial's run (its config does not hash to {key}); move that "
                              "folder away to rerun the trial")
        adopted += store.adopt(key, result)
    return adopted


def _check_settings(sweep: Sweep, strategy: str, executor: str) -> None:
    if strategy not in (*STRATEGIES, "hessian"):
        raise ConfigError(f"--strategy: unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}, hessian")
    ref = sweep.cfg.prediction.reference
    if strategy == "hessian" and ref not in sweep.cfg.space.methods:
        raise ConfigError(f"{sweep.source}: prediction.reference: {ref!r} is not among space.methods "
                          f"({', '.join(sweep.cfg.space.methods)}); strategy hessian predicts the others from it")
    if executor not in ("local", "ray"):
        raise ConfigError(f"--executor: unknown executor {executor!r}; use local or ray")


def run_sweep(sweep: Sweep, out: str | Path, *, workers: int = 1, executor: str = "local",
              strategy: str | None = None, address: str | None = None, store_url: str | None = None,
              fuse: int | None = None, progress: bool = True, retry: list[str] | None = None,
              rebuild: bool = False, costs: bool = True) -> dict[str, Any]:
    """Run (or resume) ``sweep`` into folder ``out``; returns counts by status.

    ``fuse``: at most this many compatible trials train together in one fused group (1: none;
    ``None``: as many as fit in memory, see :func:`fused_tasks`). ``retry``: statuses (failed, oom,
    diverged, collapsed) whose trials run again. ``rebuild``: recover the store from the trial folders
    (every finished run adopted) and run nothing. ``costs``: time alone each group's best setting that trained
    fused (:mod:`lorabench.sweep.costs`)."""
    out = Path(out)
    strategy = strategy or sweep.cfg.strategy
    _check_settings(sweep, strategy, executor)
    out.mkdir(parents=True, exist_ok=True)  # only once the settings are known good: a bad one leaves no folder
    hcfg = None
    if (sweep.cfg.hessian or strategy == "hessian") and not rebuild:
        from ..hessian import hessian_config

        hcfg = hessian_config(sweep.cfg.hessian_config, f"{sweep.source}: hessian_config")
    url = store_url or default_url(out)
    store = open_for(sweep, out, url, strategy)
    try:
        if rebuild:
            found = [t for t in sweep.trials if (out / "trials" / t.key / "result.json").is_file()]
            store.add(found)
            adopt_finished(store, out, [t.key for t in found])
        else:
            if retry:
                store.retry(retry_statuses(retry))
            _nest_tracker_runs(sweep, store, out)
            log = (lambda m: tqdm.write(m)) if progress else (lambda _: None)
            if strategy == "hessian":
                assert hcfg is not None
                propose = hessian_strategy(sweep, measure_hessians(sweep, store, hcfg, log=log, progress=progress))
            else:
                propose = STRATEGIES[strategy]
            if sweep.cfg.space.seeds_at_best:
                propose = at_best(propose, set(sweep.cfg.space.seeds_at_best))
            _run_pending(sweep, store, out, url, propose, workers=workers, executor=executor,
                         address=address, fuse=fuse, progress=progress)
            if hcfg is not None and strategy != "hessian":  # that one measured them first
                measure_hessians(sweep, store, hcfg, log=log)
            evaluate_held_out(store, out, progress=progress, log=log)
            if costs:
                from .costs import measure_costs

                measure_costs(store, out, final=sweep.cfg.final, log=log)
        counts: dict[str, int] = {}
        for r in store.rows():
            counts[r["status"].value] = counts.get(r["status"].value, 0) + 1
        return counts
    finally:
        store.close()


def _nest_tracker_runs(sweep: Sweep, store: Store, out: Path) -> None:
    """With MLflow tracking, one sweep run (kept in the store, so a resume reuses it) for the trials' runs to nest
    under; its id reaches the local workers through the environment."""
    import os

    from ..trackers import MLFLOW_PARENT, sweep_parent_run

    base = validate(sweep.base, sweep.source)
    if "mlflow" not in base.report_to or os.environ.get(MLFLOW_PARENT):
        return
    parent = store.get_meta("mlflow_parent") or sweep_parent_run(base.report_to, out, base.dump())
    if parent:
        store.set_meta("mlflow_parent", parent)
        os.environ[MLFLOW_PARENT] = str(parent)


def retry_statuses(names: list[str]) -> list[Status]:
    allowed = {s.value: s for s in BAD}
    bad = [n for n in names if n not in allowed]
    if bad:
        raise ConfigError(f"--retry: {', '.join(bad)} is not a status to retry; choose from {', '.join(allowed)}")
    return [allowed[n] for n in names]


def _run_pending(sweep: Sweep, store: Store, out: Path, url: str, propose: Any, *, workers: int, executor: str,
                 address: str | None, fuse: int | None, progress: bool) -> None:
    """Propose, adopt what is already finished on disk, run the pending trials; until none is pending."""
    monitor = Monitor(store, max(1, workers), progress)
    monitor.start()
    try:
        while True:
            done = {r["key"]: r for r in store.rows()}
            proposals = propose(sweep.trials, done)
            store.add(proposals)
            pending_keys = {r["key"] for r in store.rows() if r["status"] is Status.PENDING}
            if adopt_finished(store, out, [p.key for p in proposals if p.key in pending_keys]):
                continue  # finished folders were recorded: propose again from the fuller record
            rows = {r["key"]: r for r in store.rows()}
            pending = [rows[s.key] for s in proposals if rows[s.key]["status"] is Status.PENDING]
            if not pending:
                break
            free = None if fuse is not None else free_memory(trial_device(sweep)) / max(1, workers)
            tasks = fused_tasks(pending, fuse, free)
            if executor == "ray":
                run_ray(url, str(out), tasks, address=address, num_cpus=sweep.cfg.execution.num_cpus,
                        num_gpus=sweep.cfg.execution.num_gpus)
            else:
                ex = sweep.cfg.execution
                run_local(url, str(out), tasks, workers, ex.num_cpus if "num_cpus" in ex.model_fields_set else None)
    finally:
        monitor.close()
