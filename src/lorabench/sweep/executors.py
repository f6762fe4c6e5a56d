"""Where trials run: this machine (``local``, N worker processes) or a Ray cluster (``ray``).

Both call the same ``run_trials``, which claims the trials in the shared store before running it,
so the executors differ only in scheduling.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor

from ..errors import ConfigError
from .worker import run_trials


def run_local(store_url: str, sweep_dir: str, tasks: list[list[str]], workers: int) -> list[list[str]]:
    """Run ``tasks`` (each one trial, or a group to fuse) on this machine, ``workers`` at a time, with the
    CPU cores split between them.

    Each task gets a fresh process: its peak memory is its own (on CPU, the process's peak RSS)
    and nothing leaks from one task into the next.
    """
    threads = max(1, (os.cpu_count() or 1) // workers)
    n = len(tasks)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             max_tasks_per_child=1) as pool:
        return list(pool.map(run_trials, [store_url] * n, [sweep_dir] * n, tasks, [threads] * n))


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
