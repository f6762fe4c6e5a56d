"""Where a result came from: package versions, source commit, device and data hashes."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import subprocess
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

import torch

PACKAGES = ("lorabench", "torch", "transformers", "peft", "datasets", "scikit-learn", "numpy", "gguf")


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            out[p] = None
    return out


def git_commit() -> dict[str, Any]:
    """The commit of the lorabench source tree (and whether it had uncommitted changes), if it is a checkout."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip() != ""
        return {"commit": head, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"type": device.type, "cpu": platform.processor() or platform.machine(),
                            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def provenance(device: torch.device, data: dict[str, dict[str, str]], model: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    """``model``: what the base model's weights are when its name does not say it (e.g. a dequantised GGUF)."""
    out = {"versions": versions(), "git": git_commit(), "device": device_info(device), "data": data,
           "host": platform.node(), "time": datetime.now(UTC).isoformat(timespec="seconds")}
    if model is not None:
        out["model"] = model
    return out
