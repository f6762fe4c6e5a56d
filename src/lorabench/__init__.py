"""lorabench: compare LoRA variants fairly.

Public API::

    lorabench.adapt(model, method, rank=..., alpha=..., target_modules=None, **options)
    lorabench.build_optimizer(model, method, lr=..., weight_decay=0.0, **options)
    lorabench.methods()
    lorabench.load_config(path, overrides) / lorabench.run(cfg, run_dir)
"""

import warnings
from importlib.metadata import PackageNotFoundError, version

from .adapters import adapt, build_optimizer
from .config import RunConfig, load_config
from .methods import methods
from .runner import run

# transformers 5 warns on every PEFT wrap about a rename that is not ours to make.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

try:
    __version__ = version("lorabench")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["RunConfig", "__version__", "adapt", "build_optimizer", "load_config", "methods", "run"]
