"""Timing and memory, defined once for every method.

Training time is the wall time from the start of the first optimizer step to the end of the last,
minus the time spent evaluating; loading and initialisation are outside it. On CUDA the device is
synchronised at each clock read. Peak memory is ``torch.cuda.max_memory_allocated`` reset at the
first step on CUDA, and the process's peak resident set size on CPU (which includes loading).
"""

from __future__ import annotations

import resource
import time

import torch


class Stopwatch:
    """Accumulates training time, pausing around evaluations."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.total = 0.0
        self._since: float | None = None

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def start(self) -> None:
        if self._since is None:
            self._since = self._now()

    def pause(self) -> None:
        if self._since is not None:
            self.total += self._now() - self._since
            self._since = None


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> tuple[float, str]:
    """(peak in MiB, what was measured)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_memory_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_peak_rss"


def free_memory(device: torch.device) -> float:
    """Bytes free for new work: the GPU's free memory on CUDA, else the machine's available memory."""
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    import psutil

    return float(psutil.virtual_memory().available)


def used_memory(device: torch.device) -> float:
    """Bytes in use now: tensors allocated on CUDA, else this process's resident set."""
    if device.type == "cuda":
        return float(torch.cuda.memory_allocated(device))
    import psutil

    return float(psutil.Process().memory_info().rss)
