"""Where trials run: this machine (``local``, N worker processes) or a Ray cluster (``ray``).

Both call the same ``run_trial``, which claims the trial in the shared store before running it,
so the executors differ only in scheduling.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor

from ..errors import ConfigError
from .worker import run_trial


def run_local(store_url: str, sweep_dir: str, keys: list[str], workers: int) -> list[str]:
    """Run ``keys`` on this machine, ``workers`` at a time, with the CPU cores split between them.

    Each trial gets a fresh process: its peak memory is its own (on CPU, the process's peak RSS)
    and nothing leaks from one trial into the next.
    """
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             max_tasks_per_child=1) as pool:
        return list(pool.map(run_trial, [store_url] * len(keys), [sweep_dir] * len(keys), keys,
                             [threads] * len(keys)))


def run_ray(store_url: str, sweep_dir: str, keys: list[str], *, address: str | None, num_cpus: int,
            num_gpus: float) -> list[str]:
    """Run ``keys`` as Ray tasks (``num_cpus``/``num_gpus`` each) on the cluster at ``address``,
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
    task = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=0, max_calls=1)(run_trial)
    return ray.get([task.remote(store_url, sweep_dir, k, num_cpus) for k in keys])
