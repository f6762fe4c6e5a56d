"""The public entry points for methods: ``adapt`` a model and ``build_optimizer`` for it."""

from __future__ import annotations

from typing import Any

import torch
from peft import PeftModel, get_peft_model
from torch import nn

from .errors import ConfigError
from .methods import get_method, method_options
from .methods.base import Calibration
from .methods.layers import remember_init
from .models import is_classifier, targeted_linears


def adapt(model: nn.Module, method: str, *, rank: int, alpha: float,
          target_modules: str | list[str] | None = None, dropout: float = 0.0,
          calibration: Calibration | None = None, **options: Any) -> PeftModel:
    """Freeze ``model`` and attach ``method``'s adapter to ``target_modules`` (default: all linear layers).

    ``calibration`` supplies training batches to methods whose init needs data (``.batches(n)``). Returns the PEFT
    model, whose only trainable parameters are the adapter's (and, for a classifier, its head).
    """
    opts = method_options(method, options)
    targets = target_modules or "all-linear"
    linears = targeted_linears(model, targets)
    if not linears:
        names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise ConfigError(f"target_modules: {targets!r} matches no linear layer of {type(model).__name__}; its linear "
                          f"layers are named {', '.join(names)}")
    if rank < 1:
        raise ConfigError(f"rank: must be >= 1 (got {rank})")
    name, smallest = min(linears, key=lambda nl: min(nl[1].in_features, nl[1].out_features))
    limit = min(smallest.in_features, smallest.out_features)
    if rank > limit:
        raise ConfigError(f"rank: {rank} exceeds the dimension {limit} of targeted layer {name!r}")
    classifier = is_classifier(model)
    head = [n for n in ("classifier", "score") if hasattr(model, n)] if classifier else None
    m = get_method(method)
    config = m.peft_config(model, rank=rank, alpha=alpha, target_modules=targets, dropout=dropout,
                           task_type="SEQ_CLS" if classifier else "CAUSAL_LM", modules_to_save=head, opts=opts)
    peft_model = get_peft_model(model, config)
    m.initialise(peft_model, opts, calibration)
    if m.residual:
        remember_init(peft_model)  # its adapter is saved as an update of the original W
    return peft_model


def silence_base_dropout(model: nn.Module) -> int:
    """Set every dropout of the frozen base to p = 0 (the adapter's own dropout is kept); returns how many.

    The base is frozen, so its dropout only adds noise common to every method; without it a run is a
    deterministic function of its seed, which fused training relies on. Covers ``nn.Dropout`` modules
    and the float ``attention_dropout`` of attention modules that pass it to their kernel.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    adapter_owned = {id(m) for t in model.modules() if isinstance(t, BaseTunerLayer)
                     for name, m in t.named_modules() if name and not name.startswith("base_layer")}
    count = 0
    for mod in model.modules():
        if isinstance(mod, nn.Dropout) and id(mod) not in adapter_owned and mod.p > 0:
            mod.p = 0.0
            count += 1
        attn: Any = mod  # a plain float attribute, outside nn.Module's typing (Tensor | Module)
        if isinstance(getattr(attn, "attention_dropout", None), float) and attn.attention_dropout > 0:
            attn.attention_dropout = 0.0
            count += 1
    return count


def build_optimizer(model: nn.Module, method: str, *, lr: float, weight_decay: float = 0.0,
                    **options: Any) -> torch.optim.Optimizer:
    """AdamW over ``model``'s trainable parameters, grouped as ``method`` requires (e.g. LoRA+'s η_B)."""
    if lr <= 0:
        raise ConfigError(f"lr: must be > 0 (got {lr})")
    opts = method_options(method, options)
    return get_method(method).build_optimizer(model, lr=lr, weight_decay=weight_decay, opts=opts)


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
