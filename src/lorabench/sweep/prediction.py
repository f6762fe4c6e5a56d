"""Learning rates predicted from sharpness at init, and how well such predictions held.

"Learning Rate Matters" finds that the tuned rates of LoRA variants follow the largest eigenvalue of the loss
Hessian at initialisation: the sharper the start, the smaller the best rate. Gradient descent on a quadratic is
stable for lr < 2/λ_max, so if every method's best rate sits at the same fraction of its bound,

    lr_m = lr_ref · (λ_ref / λ_m)^γ,   γ = 1,

with ``ref`` a method whose best rate is known (LoRA by default). γ is an assumption; across methods it is
measured by the least-squares fit  log lr* = a − γ̂ · log λ_max  (:func:`fit_exponent`, the study's claim in one
number: γ̂ ≈ 1 with a high R² where it holds).

How each method enters is its ``Method.lr_rule`` (``direct``, ``scaled`` for per-parameter rates such as LoRA+,
``approximate`` for LoFT's projected optimiser) and ``Method.lr_note``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import ConfigError

SHARED_AXES = ("rank", "batch_size", "steps")  # the axes a method and its reference share; others are its options


def check_lambda(method: str, block: str, lam: Any) -> float:
    """``lam`` as a float if it is a positive finite λ_max, else a one-line ConfigError naming method and block."""
    try:
        value = float(lam)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"hessian: {method}: λ_max {lam} of block {block!r} is not a positive finite number, so "
                          "no learning rate can be predicted from it; measure another block (hessian_config.layers, "
                          ".modules or .whole) or leave the method out")
    return value


def predict_lr(lr_ref: float, lam_ref: float, lam: float, exponent: float = 1.0) -> float:
    """lr_ref · (λ_ref / λ)^γ."""
    return lr_ref * (lam_ref / lam) ** exponent


def nearest_index(grid: list[float], lr: float) -> int:
    """The index of the grid point nearest ``lr`` on a log scale (the lower one on a tie)."""
    return min(range(len(grid)), key=lambda i: (abs(math.log(grid[i] / lr)), i))


def grid_steps(grid: list[float], predicted: float, found: float) -> int:
    """How many grid points lie between the point nearest the prediction and the rate found (signed: + above)."""
    return nearest_index(grid, found) - nearest_index(grid, predicted)


def reference_group(group: str, reference: str) -> str:
    """The group (JSON) of the reference method beside ``group``: the same rank, batch size and steps."""
    g = json.loads(group)
    return json.dumps({"method": reference, **{k: g[k] for k in SHARED_AXES if k in g}}, sort_keys=True)


@dataclass(frozen=True)
class ExponentFit:
    """log lr* = intercept + slope · log λ_max over n methods; ``exponent`` = −slope (γ̂), with its 95 % interval
    (None below 3 points) and R²."""

    n: int
    slope: float
    intercept: float
    exponent: float
    ci: tuple[float, float] | None
    r2: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_exponent(lams: list[float], lrs: list[float]) -> ExponentFit | None:
    """The least-squares fit of log(best lr) on log(λ_max) (``scipy.stats.linregress``, natural logs); its slope's
    95 % interval from Student's t with n − 2 degrees of freedom. None below two points or when every λ is equal."""
    from scipy import stats

    if len(lams) < 2 or len(set(lams)) < 2:
        return None
    x, y = [math.log(v) for v in lams], [math.log(v) for v in lrs]
    res = stats.linregress(x, y)
    n = len(x)
    ci, r2 = None, None
    if n >= 3 and math.isfinite(float(res.stderr)):  # every rate equal: no spread to explain, no interval
        half = float(stats.t.ppf(0.975, n - 2)) * float(res.stderr)
        ci = (-float(res.slope) - half, -float(res.slope) + half)
    if n >= 3 and math.isfinite(float(res.rvalue)):
        r2 = float(res.rvalue) ** 2
    return ExponentFit(n=n, slope=float(res.slope), intercept=float(res.intercept), exponent=-float(res.slope),
                       ci=ci, r2=r2)
