"""lorabench: compare LoRA variants fairly.

Public API (loaded on first use, so that ``import lorabench`` and the CLI's light commands start fast)::

    lorabench.adapt(model, method, rank=..., alpha=..., target_modules=None, **options)
    lorabench.build_optimizer(model, method, lr=..., weight_decay=0.0, **options)
    lorabench.methods()
    lorabench.load_config(path, overrides) / lorabench.run(cfg, run_dir)
"""

from __future__ import annotations

import importlib
import warnings
from importlib.metadata import PackageNotFoundError, version
from typing import Any

# transformers 5 warns on every PEFT wrap about a rename that is not ours to make.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

try:
    __version__ = version("lorabench")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

from .methods.registry import methods  # torch-free; binding it here keeps ``lorabench.methods()`` the function

_API = {"adapt": "adapters", "build_optimizer": "adapters", "RunConfig": "config", "load_config": "config",
        "run": "runner"}

__all__ = ["RunConfig", "__version__", "adapt", "build_optimizer", "load_config", "methods", "run"]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'lorabench' has no attribute {name!r}")
