"""LoRA variants, one module each, behind one registry.

Importing this package registers every method; ``methods()`` lists them in a fixed order.
"""

# Registration order is the order ``methods()`` lists.
from . import lora  # noqa: F401  (registers on import)
from . import init_b  # noqa: F401
from . import lora_xs  # noqa: F401
from . import loraplus  # noqa: F401
from . import pissa  # noqa: F401
from .base import ADAPTER, Method, lora_layers
from .registry import get_method, method_classes, methods, option_owner

__all__ = ["ADAPTER", "Method", "get_method", "lora_layers", "method_classes", "methods", "option_owner"]
