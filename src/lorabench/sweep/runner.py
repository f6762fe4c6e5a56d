"""``run_sweep``: propose trials with the strategy, run the pending ones, repeat until none is left.

Resuming is re-running the same command: finished trials are kept, trials left ``running`` by a
dead worker go back to pending, and the strategy proposes the same trials from the same results.

``hessian: true``: after the trials, each method's Hessian at init is measured once (see
``measure_hessians``) and kept in the store, so ``best`` can show its λ_max.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from tqdm.auto import tqdm

from ..config import merge, validate
from ..errors import ConfigError
from ..measure import free_memory
from ..files import atomic_write_text
from .config import Sweep
from .executors import run_local, run_ray
from .store import DONE, Store, default_url
from .strategies import STRATEGIES

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
        self.total.n = sum(r["status"] in DONE for r in rows)
        self.total.refresh()
        running = sorted((r for r in rows if r["status"] == "running"), key=lambda r: r["owner"] or "")
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
                     log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Each method's Hessian at init (``lorabench.hessian.measure`` with ``hcfg``) on the sweep's base config
    with that method at the first seed, kept in the store's meta ``hessian`` (method → result). A method
    already measured with the same settings is not measured again."""
    from ..hessian import measure

    for method in sweep.cfg.space.methods:
        known = (store.get_meta("hessian") or {}).get(method)
        if known is not None and known.get("hessian") == hcfg.model_dump(mode="json"):
            continue
        cfg = validate(merge(sweep.base, {"method": method, "seed": sweep.cfg.space.seeds[0]}), sweep.source)
        result = measure(cfg, hcfg, log=log)
        store.set_meta("hessian", {**(store.get_meta("hessian") or {}), method: result})
    return store.get_meta("hessian") or {}


def fused_tasks(rows: list[dict[str, Any]], fuse: int | None, free_bytes: float | None = None) -> list[list[str]]:
    """Pending trials as tasks: trials with the same ``fuse_key`` (they differ only in lr, seed or method
    options) in groups of at most ``fuse`` (``None``: :func:`lorabench.fuse.auto_fuse` from ``free_bytes``,
    the memory free to each worker); every other trial alone. Groups keep the store's order."""
    from ..fuse import auto_fuse, fuse_key

    groups: dict[Any, list[tuple[str, Any]]] = {}
    for r in rows:
        cfg = validate(r["config"], f"trial {r['key']}")
        key = fuse_key(cfg)
        groups.setdefault(key if key is not None else ("alone", r["key"]), []).append((r["key"], cfg))
    tasks = []
    for members in groups.values():
        k = fuse if fuse is not None else auto_fuse(members[0][1], free_bytes or 0)
        keys = [m[0] for m in members]
        tasks += [keys[i : i + max(1, k)] for i in range(0, len(keys), max(1, k))]
    return tasks


def trial_device(sweep: Sweep) -> torch.device:
    """Where the trials will run: CUDA unless the base config asks for the CPU or none is present."""
    import torch

    on_gpu = validate(sweep.base, sweep.source).device != "cpu" and torch.cuda.is_available()
    return torch.device("cuda" if on_gpu else "cpu")


def run_sweep(sweep: Sweep, out: str | Path, *, workers: int = 1, executor: str = "local",
              strategy: str | None = None, address: str | None = None, store_url: str | None = None,
              fuse: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) ``sweep`` into folder ``out``; returns counts by status.

    ``fuse``: at most this many compatible trials train together in one fused group (1: none;
    ``None``: as many as fit in memory, see :func:`fused_tasks`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    strategy = strategy or sweep.cfg.strategy
    if strategy not in STRATEGIES:
        raise ConfigError(f"--strategy: unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    hcfg = None
    if sweep.cfg.hessian:
        from ..hessian import hessian_config

        hcfg = hessian_config(sweep.cfg.hessian_config, f"{sweep.source}: hessian_config")
    url = store_url or default_url(out)
    store = Store(url)
    recorded = store.get_meta("sweep")
    if recorded is not None and recorded["base"] != sweep.base:
        raise ConfigError(f"{out}: holds a sweep of another base config; use a new folder")
    known = store.rows()
    if known:  # trials recorded by a lorabench whose run config had other fields would not match by key
        old = known[0]["config"]
        now = validate(old, f"{out}: trial {known[0]['key']}").dump()
        if set(now) != set(old):
            raise ConfigError(f"{out}: its trials were recorded with other run-config fields "
                              f"({', '.join(sorted(set(now) ^ set(old)))}); resume it with the lorabench "
                              "that made it, or use a new folder")
    store.set_meta("sweep", sweep.dump())
    store.set_meta("strategy", strategy)
    atomic_write_text(out / "sweep.yaml", yaml.safe_dump(sweep.dump(), sort_keys=False))
    store.reclaim()
    propose = STRATEGIES[strategy]
    monitor = Monitor(store, max(1, workers), progress)
    monitor.start()
    try:
        while True:
            done = {r["key"]: r for r in store.rows()}
            proposals = propose(sweep.trials, done)
            store.add(proposals)
            rows = {r["key"]: r for r in store.rows()}
            pending = [rows[s.key] for s in proposals if rows[s.key]["status"] == "pending"]
            if not pending:
                break
            free = None if fuse is not None else free_memory(trial_device(sweep)) / max(1, workers)
            tasks = fused_tasks(pending, fuse, free)
            if executor == "ray":
                run_ray(url, str(out), tasks, address=address, num_cpus=sweep.cfg.execution.num_cpus,
                        num_gpus=sweep.cfg.execution.num_gpus)
            elif executor == "local":
                run_local(url, str(out), tasks, workers)
            else:
                raise ConfigError(f"--executor: unknown executor {executor!r}; use local or ray")
    finally:
        monitor.close()
    if hcfg is not None:
        measure_hessians(sweep, store, hcfg, log=(lambda m: tqdm.write(m)) if progress else (lambda _: None))
    counts: dict[str, int] = {}
    for r in store.rows():
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    store.close()
    return counts
