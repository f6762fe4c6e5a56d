"""LoRA variants, one module each, behind one registry.

Importing this package registers every method: the SST-2 study's five first, in the study's order,
then every other module of this package, alphabetically. A new method is a new module here.
"""

import importlib
import pkgutil

# isort: off
from . import lora, init_b, lora_xs, loraplus, pissa  # noqa: F401  (registers on import, in this order)
# isort: on
from .base import ADAPTER, Calibration, Method, lora_layers
from .registry import get_method, method_classes, methods, option_owner

_INFRA = {"base", "catalogue", "registry"}
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name not in _INFRA:
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["ADAPTER", "Calibration", "Method", "get_method", "lora_layers", "method_classes", "methods",
           "option_owner"]
