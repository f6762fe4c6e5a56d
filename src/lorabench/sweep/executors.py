"""Where trials run: this machine (``local``, N worker processes) or a Ray cluster (``ray``).

Both call the same ``run_trials``, which claims the trials in the shared store before running it,
so the executors differ only in scheduling.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
from multiprocessing.connection import wait
from typing import Any

from ..errors import ConfigError
from ..records import Status
from .store import Store
from .worker import run_trials


def run_local(store_url: str, sweep_dir: str, tasks: list[list[str]], workers: int, threads: int | None = None) -> None:
    """Run ``tasks`` (each one trial, or a group to fuse) on this machine, ``workers`` at a time, with the
    CPU cores split between them (or ``threads`` torch threads each, where the sweep sets ``execution.num_cpus``).

    Each task gets a fresh process: its peak memory is its own (on CPU, the process's peak RSS) and nothing
    leaks from one task into the next. A worker that dies (the kernel's OOM killer sends SIGKILL) costs only its
    own trials, recorded with the signal; another worker takes the next task. Ctrl-C stops at once: the running
    trials go back to pending, and rerunning the command resumes.
    """
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    ctx = mp.get_context("spawn")
    queue: list[list[str]] = list(tasks)
    running: dict[Any, list[str]] = {}  # worker process → its task
    try:
        while queue or running:
            while queue and len(running) < workers:
                task = queue.pop(0)
                proc = ctx.Process(target=run_trials, args=(store_url, sweep_dir, task, threads), daemon=False)
                _start_deaf_to_ctrl_c(proc)
                running[proc] = task
            wait([p.sentinel for p in running])
            for proc in [p for p in running if not p.is_alive()]:
                task = running.pop(proc)
                proc.join()
                if proc.exitcode:
                    worker_died(store_url, task, proc.pid, proc.exitcode)
    except KeyboardInterrupt:
        for proc, task in running.items():
            proc.terminate()
            proc.join()
            release(store_url, task, proc.pid)
        raise


def _start_deaf_to_ctrl_c(proc: Any) -> None:
    """Start a worker that ignores SIGINT from its first instruction (a spawned interpreter keeps an ignored
    disposition). Ctrl-C reaches the whole process group; the parent answers it by terminating its workers and
    releasing their trials, whereas a worker interrupted on its own would print a traceback from mid-step."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        proc.start()
    finally:
        signal.signal(signal.SIGINT, previous)


def _owner(pid: int | None) -> str:
    return f"{socket.gethostname()}:{pid}"


def worker_died(store_url: str, keys: list[str], pid: int | None, exitcode: int) -> None:
    """Record the trials a dead worker was running as ``oom`` (killed by SIGKILL) or ``failed``, with the cause."""
    killed = exitcode < 0
    name = signal.Signals(-exitcode).name if killed and -exitcode in signal.valid_signals() else str(exitcode)
    why = (f"worker process {pid} was killed by {name} ({exitcode}) while running this trial"
           + ("; SIGKILL is what the kernel's OOM killer sends" if exitcode == -signal.SIGKILL else "")
           if killed else f"worker process {pid} exited with status {exitcode} while running this trial")
    store = Store(store_url)
    try:
        for key in keys:
            store.finish(key, _owner(pid), Status.OOM if exitcode == -signal.SIGKILL else Status.FAILED, None, why)
    finally:
        store.close()


def release(store_url: str, keys: list[str], pid: int | None) -> None:
    """Put an interrupted worker's trials back to pending."""
    store = Store(store_url)
    try:
        store.release(keys, _owner(pid))
    finally:
        store.close()


def run_ray(store_url: str, sweep_dir: str, tasks: list[list[str]], *, address: str | None, num_cpus: int,
            num_gpus: float) -> list[list[str]]:
    """Run ``tasks`` (each one trial, or a group to fuse) as Ray tasks (``num_cpus``/``num_gpus`` each) on the cluster at ``address``,
    or on a local Ray instance when no address is given."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'lorabench[ray]'") from None
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=0, max_calls=1)(run_trials)
    # ray's overloads match run_trials to a 3-parameter RemoteFunction2 (its 4th parameter has a default)
    return ray.get([remote.remote(store_url, sweep_dir, t, num_cpus) for t in tasks])  # type: ignore[call-arg]
