"""LoRA variants, one module each, behind one registry.

Importing this package registers every method: the SST-2 study's five first, in the study's order,
then every other module of this package, alphabetically. A new method is a new module here. Method
modules import torch and PEFT only where they act on a model, so the registry, the options and the
catalogue load without them (``lorabench methods`` starts fast). The helper modules (``_INFRA``) hold
what needs torch at import: PEFT layer helpers, LoFT's optimizer, LoRA-XS's layer, LoRA-GA's gradient.
"""

import importlib
import pkgutil

# isort: off
from . import lora, init_b, lora_xs, loraplus, pissa  # noqa: F401  (registers on import, in this order)
# isort: on
from .base import ADAPTER, Calibration, Fusion, Method
from .registry import get_method, method_classes, method_options, methods, option_owner

_INFRA = {"base", "catalogue", "registry", "layers", "loft_optimizer", "lora_ga_gradient", "lora_xs_layer"}
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name not in _INFRA:
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["ADAPTER", "Calibration", "Fusion", "Method", "get_method", "method_classes", "method_options", "methods",
           "option_owner"]
