"""The held-out pass: a sweep's test figures only where they are reported.

A sweep chooses each group's setting on validation and reports held-out figures (the ``test`` split) only at that
setting. So its trials do not evaluate the held-out splits (``held_out_deferred`` in their result says which were not
computed); each keeps its trained parameters (``trainable.safetensors``). After the trials, for every seed that
finished ok at each group's best point, :func:`lorabench.runner.evaluate_kept` rebuilds the model as the trial
built it, loads those parameters and evaluates the held-out splits: the same model the trial trained, without
training it again. The figures join the trial's ``result.json`` and its store row (``held_out``), its per-example
file joins its folder, and ``best``, the report and its paired tests read them as before. The pass resumes: a trial
already evaluated is not evaluated again; when later trials move the best, the new best is evaluated then.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from ..config import validate
from ..errors import ConfigError
from ..files import atomic_write_json
from ..records import TrialRow
from .store import Store
from .summary import best_point_rows

PASS_NOTE = "evaluated after the sweep, at the group's best setting, from the trial's kept trained parameters"


def deferred_at_best(store: Store) -> list[TrialRow]:
    """The trials at each group's best point that finished ok with held-out splits still to evaluate."""
    return [r for _, at in best_point_rows(store) for r in at if r["result"] and r["result"].get("held_out_deferred")]


def evaluate_held_out(store: Store, out: Path, *, progress: bool = False,
                      log: Callable[[str], None] = lambda _: None) -> int:
    """Evaluate the deferred held-out splits at every group's best point; returns how many trials were evaluated."""
    from transformers.utils import logging as hf_logging

    from ..runner import evaluate_kept

    hf_logging.disable_progress_bar()  # the pass's own bar reports progress
    todo = deferred_at_best(store)
    done = 0
    for r in tqdm(todo, desc="held-out pass", unit="trial", disable=not progress or not todo, leave=False,
                  dynamic_ncols=True):
        run_dir = out / "trials" / r["key"]
        try:
            metrics = evaluate_kept(validate(r["config"], f"trial {r['key']}"), run_dir)
        except ConfigError as e:
            log(f"held-out pass: {r['method']} lr={r['lr']:g} seed {r['seed']}: {e}")
            continue
        result = {**(r["result"] or {}), "held_out": metrics, "held_out_deferred": [], "held_out_pass": PASS_NOTE}
        if (run_dir / "result.json").is_file():
            atomic_write_json(run_dir / "result.json", result)
        store.amend(r["key"], result)
        done += 1
    return done
