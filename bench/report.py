"""Regenerate ``BENCHMARKS.md`` from every ``bench/results/*.json``.

Each result file is a JSON object with a ``"kind"`` field; the report has one section per kind.
A kind is rendered by one small function registered with :func:`renderer`::

    @renderer("fusion", "Fused LoRA kernels", intro="What is compared and how.")
    def render_fusion(result: dict) -> str:
        return "| … | … |\\n"        # Markdown for one result file

The function returns the body for one file; the heading (the file's ``"case"`` or ``"name"``, else
its file name) and the provenance lines under it (machine, CPU/GPU, versions, date, command) are
added here from the optional common fields ``"machine"`` (as ``benchlib.machine``) or
``"provenance"`` (as ``lorabench.provenance.provenance``), ``"created"`` (or ``"date"``) and
``"command"``.
A kind without a renderer, or whose renderer fails, is listed generically (its scalar fields), and
an unreadable file is named with the reason: the report never stops on one bad file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from benchlib import BenchError, run_main  # noqa: E402

Result = dict[str, Any]


@dataclass(frozen=True)
class Renderer:
    """How one result kind is rendered: its section title, an introduction and a per-file function."""

    kind: str
    title: str
    intro: str
    render: Callable[[Result], str]


RENDERERS: dict[str, Renderer] = {}


def renderer(kind: str, title: str, *, intro: str = "") -> Callable[[Callable[[Result], str]], Callable[[Result], str]]:
    """Register ``fn(result) -> markdown`` as the renderer of results whose ``"kind"`` is ``kind``."""
    def register(fn: Callable[[Result], str]) -> Callable[[Result], str]:
        RENDERERS[kind] = Renderer(kind, title, intro.strip(), fn)
        return fn
    return register


# --------------------------------------------------------------------------------------------- helpers

def fmt(value: Any, spec: str = "{}") -> str:
    """``spec.format(value)``, or an en dash for a missing value."""
    if value is None:
        return "–"
    try:
        return spec.format(value)
    except (ValueError, TypeError):
        return str(value)


def table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    """A Markdown table; ``align`` is one character per column: l, r or c."""
    marks = {"l": ":--", "r": "--:", "c": ":-:"}
    sep = [marks[a] for a in (align or "l" * len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def provenance_lines(result: Result) -> str:
    """Machine, CPU/GPU, versions, date and the exact command, from whichever common fields exist."""
    mach = result.get("machine") or result.get("provenance") or {}
    dev = mach.get("device") or {}
    ver = mach.get("versions") or {}
    git = mach.get("git") or {}
    parts = []
    if dev or mach.get("cpu_model"):
        cpu = mach.get("cpu_model") or dev.get("cpu")
        what = [f"{dev.get('type', '?')}"]
        if dev.get("name"):
            what.append(f"GPU {dev['name']}" + (f" (CUDA {dev['cuda']})" if dev.get("cuda") else ""))
        if cpu:
            what.append(f"CPU {cpu}" + (f", {dev['cpu_count']} cores" if dev.get("cpu_count") else "")
                        + (f", {dev['torch_threads']} torch threads" if dev.get("torch_threads") else ""))
        if mach.get("memory_gib"):
            what.append(f"{mach['memory_gib']:.0f} GiB RAM")
        parts.append("- Machine: " + "; ".join(what) + (f" (host `{mach['host']}`)" if mach.get("host") else ""))
    if ver:
        keys = [k for k in ("python", "torch", "transformers", "peft", "accelerate", "lorabench") if ver.get(k)]
        parts.append("- Versions: " + ", ".join(f"{k} {ver[k]}" for k in keys))
    if git.get("commit"):
        dirty = " with uncommitted changes" if git.get("dirty") else ""
        parts.append(f"- Source: commit `{git['commit'][:12]}`{dirty}")
    date = result.get("created") or result.get("date") or mach.get("time") or result.get("time")
    if date:
        parts.append(f"- Date: {date}")
    if result.get("command"):
        env = f"LORABENCH_DATA_DIR={result['data_dir']} " if result.get("data_dir") else ""
        parts.append(f"- Command: `{env}{result['command']}`")
    return "\n".join(parts) + ("\n" if parts else "")


def plural(n: Any, word: str) -> str:
    """``"1 run"``, ``"2 runs"``."""
    return f"{n} {word}" + ("" if n == 1 else "s")


def heading(result: Result, path: Path) -> str:
    """A result's sub-heading: its case or name, else its file name."""
    return str(result.get("case") or result.get("name") or path.stem)


# --------------------------------------------------------------------------------------------- renderers

COMPARE_INTRO = """
The same LoRA run trained by lorabench (`lorabench.runner.run`) and by a baseline written as research
scripts usually are (`bench/baseline_trainer.py`: `peft.get_peft_model` + `transformers.Trainer`). Both load
the model and tokenizer with lorabench's loader after the same seeding, train the same subset with the same
token ids, LoRA config (rank, α, all linear layers; a classifier head trained in full), batch size, steps,
learning rate, schedule, warmup, gradient clipping and seed, and evaluate once after the last step. The
systems run alternately, each run in a fresh process; the tables give the median over runs and the ratio
lorabench / Trainer (above 1 is better for lorabench in throughput, worse in memory).

Definitions: training time covers the training loop alone (lorabench: first step to last; Trainer:
`on_train_begin` to `on_train_end`), CUDA synchronised. Tokens are non-pad tokens. Peak memory is the
process's peak RSS on CPU (loading included) and `torch.cuda.max_memory_allocated` from the first step on
GPU. MFU = 4 × base parameters × tokens/s ÷ the GPU's measured bf16 matmul rate. What differs by design
is listed under each case: the batch order (lorabench's seeded order, length-grouped when the config's
`length_grouping` is on, vs the Trainer's sampler, random by default), the AdamW implementation, and
the evaluation batching (lorabench sorts the dev set by length; the Trainer keeps file order). With
length grouping lorabench computes less padding, which the non-pad tokens/s credit to it; so accuracies
agree only up to run-to-run noise. With `--set length_grouping=false` (results tagged `matched`) both
systems draw the same seeded permutation, hence the same batches within the first epoch, and train to
the same losses up to float rounding: the ratios then measure the training machinery alone.
"""


def batching_line(cfg: dict[str, Any], trainer_run: Result) -> str:
    """How each system ordered its batches, and whether the frozen base's dropout was on."""
    grouping = cfg.get("length_grouping")  # absent in lorabench versions without length grouping
    order = {True: "seeded, length-grouped", False: "seeded random"}.get(grouping, "seeded random")
    onoff = {True: "on", False: "off"}
    mine = onoff[bool(cfg.get("base_dropout", True))]
    theirs = onoff.get(trainer_run.get("base_dropout"), "not recorded")
    dropout = f"{mine} in both" if mine == theirs else f"lorabench {mine}, Trainer {theirs}"
    sampler = trainer_run.get("sampler", "random")
    same = " (the same batches within the first epoch)" if grouping is not True and sampler == "random" else ""
    return f"Batches: lorabench {order}; Trainer sampler `{sampler}`{same}. Frozen base's dropout: {dropout}."


def config_line(result: Result, cfg: dict[str, Any], first_run: Result) -> str:
    """The run config in one sentence: model, method, schedule, data sizes, repeats and device."""
    model, data = cfg.get("model") or {}, cfg.get("data") or {}
    sets = f" with `{' '.join(result['sets'])}`" if result.get("sets") else ""
    return (f"Config `{result.get('config')}`{sets}: model `{model.get('name')}` ({model.get('head')} head, "
            f"{model.get('dtype')}), method `{cfg.get('method')}` r={cfg.get('rank')} α={cfg.get('alpha')}, "
            f"{cfg.get('steps')} steps × batch {cfg.get('batch_size')} × accumulation {cfg.get('grad_accum')}, "
            f"lr {cfg.get('lr')} ({cfg.get('schedule')}, warmup {cfg.get('warmup_steps')}), bf16 {cfg.get('bf16')}, "
            f"{data.get('n_train')} training examples, {first_run.get('eval_examples')} dev examples. "
            f"{plural(result.get('repeats'), 'run')} per system on {first_run.get('device')}.")


def metrics_table(result: Result) -> str:
    """Medians of both systems and their ratio, one row per metric that either system measured."""
    med, ratios = result.get("medians") or {}, result.get("ratios") or {}
    rows = []
    for m in result.get("metrics") or []:
        key, spec = m["key"], m.get("format", "{}")
        a, b = (med.get("lorabench") or {}).get(key), (med.get("trainer") or {}).get(key)
        if a is not None or b is not None:
            rows.append([m.get("label", key), fmt(a, spec), fmt(b, spec), fmt(ratios.get(key), "{:.3f}")])
    return table(["metric", "lorabench", "Trainer", "ratio"], rows, "lrrr")


@renderer("compare", "LoRA training: lorabench vs PEFT + transformers Trainer", intro=COMPARE_INTRO)
def render_compare(result: Result) -> str:
    """One lorabench-vs-Trainer case: config, what differs, the medians table, per-run values, checks."""
    runs = result.get("runs") or []
    cfg = (runs[0].get("config") if runs else None) or {}
    out = []
    if result.get("description"):
        out.append(result["description"] + ".\n\n")
    if cfg:
        out.append(config_line(result, cfg, runs[0]) + "\n\n")
    optimizers = {r.get("system"): r.get("optimizer") for r in runs if r.get("optimizer")}
    if optimizers:
        out.append("Optimizers: " + "; ".join(f"{s} {o}" for s, o in optimizers.items()) + ".\n")
    if cfg:
        trainer_run = next((r for r in runs if r.get("system") == "trainer"), {})
        out.append(batching_line(cfg, trainer_run) + "\n\n")
    out.append(metrics_table(result))
    per_run = []
    for key, label in (("train_samples_per_s", "train samples/s"), ("peak_memory_mb", "peak MiB")):
        cells = [f"{s} " + ", ".join(fmt(r.get(key), "{:.1f}") for r in runs if r.get("system") == s)
                 for s in result.get("systems") or ["lorabench", "trainer"]]
        per_run.append(f"{label} per run: " + "; ".join(cells))
    out.append("\n" + ". ".join(per_run) + ".\n")
    peak = result.get("matmul_peak")
    if peak:
        rate = fmt(peak.get("tflops"), "{:.1f}")
        out.append(f"\nMeasured {peak.get('dtype', 'bfloat16')} matmul rate: {rate} TFLOP/s "
                   f"({peak.get('size')}² products on {peak.get('name') or peak.get('device')}).\n")
    failed = [k for k, ok in (result.get("checks") or {}).items() if not ok]
    if failed:
        out.append(f"\n**Warning**: checks failed: {', '.join(failed)}; the systems did not train the same thing.\n")
    return "".join(out)


FUSION_INTRO = """
A learning-rate grid of one method run twice by the real `lorabench sweep` command, into fresh folders
with a warmed token cache: `--fuse 1` (the trials one after another, each in its own process, the sweep's
normal path) and `--fuse K` (the trials trained together through one forward/backward over one shared
frozen base, each with its own optimizer, schedule and divergence check). Wall time is the whole sweep
command; training time sums the trials' `train_seconds` (a fused trial's is its share of the group's).
"""


@renderer("fusion", "A learning-rate grid with fused training", intro=FUSION_INTRO)
def render_fusion(result: Result) -> str:
    rows = [[fmt(r["lr"], "{:.3g}"), r["status"], fmt(r["accuracy"], "{:.4f}"), fmt(r["fused_accuracy"], "{:.4f}"),
             "yes" if r["same_final"] else "**no**", fmt(r["max_rel_loss_diff"], "{:.1e}")] for r in result["rows"]]
    head = (f"{result.get('description', '')}: {result['trials']} trials of `{result['method']}`, fused "
            f"{result['fuse']} at a time.\n\n")
    summary = table(["", "sequential (`--fuse 1`)", f"fused (`--fuse {result['fuse']}`)", "fused / sequential"], [
        ["wall time, s", fmt(result["sequential_wall_s"], "{:.1f}"), fmt(result["fused_wall_s"], "{:.1f}"),
         fmt(result["wall_ratio"], "{:.3f}")],
        ["training time, s", fmt(result["sequential_train_s"], "{:.1f}"), fmt(result["fused_train_s"], "{:.1f}"),
         fmt(result["train_ratio"], "{:.3f}")]], "lrrr")
    same = ("Every trial's final metrics are identical" if result["all_same_final"]
            else "**Some trials' final metrics differ**")
    worst = max(result["rows"], key=lambda r: r["max_rel_loss_diff"])
    diffs = sorted(r["max_rel_loss_diff"] for r in result["rows"])
    return (head + summary + f"\n{same}. Per-step training losses agree to a median (over trials) largest relative "
            f"difference of {diffs[len(diffs) // 2]:.1e}; the largest, {worst['max_rel_loss_diff']:.1e}, is at lr "
            f"{worst['lr']:.3g}, where training is unstable and float rounding (a different matrix-product blocking "
            "for a larger batch) grows from step to step.\n\n"
            + table(["lr", "status", "accuracy (seq.)", "accuracy (fused)", "same final metrics", "max rel. loss diff"],
                    rows, "rlrrcr"))


HESSIAN_INTRO = """
`lorabench hessian` on one block, each measurement in a fresh process: λ_max and λ_min of the training
loss's Hessian w.r.t. the block's adapter parameters at init, over the default 500 training examples,
Lanczos to a relative residual of 1e-3 at both ends. "Graphs kept": each batch's gradient graph is built
once and every Hessian-vector product is one backward pass through it; "recomputed": every product
recomputes the forward and the first backward.
"""


@renderer("hessian", "Hessian time per block", intro=HESSIAN_INTRO)
def render_hessian(result: Result) -> str:
    rows = [[r["method"], "kept" if r["graphs_kept"] else "recomputed", fmt(r["lambda_max"], "{:.4g}"),
             fmt(r["lambda_min"], "{:.4g}"), str(r["hvps"]), fmt(r["seconds_per_hvp"], "{:.2f}"),
             fmt(r["block_seconds"], "{:.1f}"), "yes" if r["converged"] else "no"] for r in result["rows"]]
    return (f"{result.get('description', '')}, {result['samples']} samples.\n\n"
            + table(["method", "graphs", "λ_max", "λ_min", "HVPs", "s / HVP", "s per block", "converged"],
                    rows, "llrrrrrc"))


LR_PREDICTION_INTRO = """
The second study's finding as a search (`strategy: hessian`): λ_max of every method at init first, then the
reference method (LoRA) searched (here `reference_search: adaptive`: coarse points, one refinement, then a climb
until the best's neighbours both ran), every other method only at the grid point nearest its predicted rate
lr_LoRA · λ_LoRA / λ_max and one point each side, extended while its best sits on an edge. `bench/lr_prediction.py`
runs the full grid and this strategy on the same space, one after the other on the same machine, same fusion, no
cost pass (what selection costs). "grid at the pick": the grid's own accuracy at the rate the hessian strategy
chose, the same trial config, so the two columns compare like with like. "steps off": grid points between the
prediction and the rate found (far: more than one, where the prediction should not be trusted).
"""


def _fit(fit: dict[str, Any] | None) -> str:
    if not fit:
        return "–"
    ci = f" [{fit['ci'][0]:.2f}, {fit['ci'][1]:.2f}]" if fit.get("ci") else ""
    return f"γ̂ = {fit['exponent']:.2f}{ci}" + (f", R² {fit['r2']:.2f}" if fit.get("r2") is not None else "")


@renderer("lr-prediction", "Learning rates from λ_max: the hessian strategy against the full grid",
          intro=LR_PREDICTION_INTRO)
def render_lr_prediction(result: Result) -> str:
    ms = result["methods"]
    rows = [[r["method"], fmt(r["lambda_max"], "{:.4g}"), fmt(r["predicted_lr"], "{:.3g}") if r["predicted_lr"]
             else "reference", fmt(r["grid_lr"], "{:.3g}"), f"{100 * r['grid_accuracy']:.2f}",
             fmt(r["hessian_lr"], "{:.3g}"), f"{100 * r['hessian_accuracy']:.2f}",
             fmt(r["grid_accuracy_at_pick"] and 100 * r["grid_accuracy_at_pick"], "{:.2f}"),
             "–" if r["grid_steps"] is None else f"{r['grid_steps']:+d}" + (" **far**" if r["far"] else ""),
             "yes" if r["within"] else "**no**", f"{r['hessian_trials']} / {r['grid_trials']}"] for r in ms]
    g, h, c = result["grid"], result["hessian"], result["criteria"]
    summary = table(["", "full grid", "strategy: hessian", "hessian / grid"], [
        ["trials", str(g["trials"]), str(h["trials"]), f"{c['trial_fraction']:.2f}"],
        ["wall time, s (λ_max included)", f"{g['seconds']:.0f}", f"{h['seconds']:.0f}",
         f"{h['seconds'] / g['seconds']:.2f}"],
        ["fitted exponent of log lr* on log λ_max", _fit(g.get("fit")), _fit(h.get("fit")), ""]], "lrrr")
    verdict = (f"Every method's pick is the grid's best or within 0.5 points of it: "
               f"{'yes' if c['all_within_0.5_points'] else '**no**'}; trials {c['trial_fraction']:.0%} of the grid's "
               f"(budget {c['budget']:.0%}); faster than the grid: {'yes' if c['faster'] else '**no**'}.")
    return (f"{len(ms)} methods, {g['trials'] // max(1, len(ms))} rates each on the full grid.\n\n" + summary + "\n"
            + verdict + "\n\n"
            + table(["method", "λ_max", "predicted lr", "grid: best lr", "grid: acc (%)", "hessian: lr",
                     "hessian: acc (%)", "grid at the pick (%)", "steps off", "within 0.5", "trials"], rows,
                    "lrrrrrrrlcr"))


@renderer("memory", "Peak GPU memory per method (TinyLlama-1.1B architecture, rank 32)")
def render_memory(result: Result) -> str:
    rows = [[r["method"], "on" if r["checkpointing"] else "off", r["status"], fmt(r.get("peak_memory_mb"), "{:.0f}"),
             fmt(r.get("trainable_params"), "{:,}"), fmt(r.get("samples_per_second"), "{:.1f}"),
             {True: "yes", False: "**no**"}.get(r.get("under_budget"), "–")] for r in result["rows"]]
    return (f"Settings: `{' '.join(result['settings'])}`; budget {result['budget_mb'] / 1024:.0f} GB.\n\n"
            + table(["method", "checkpointing", "status", "peak MiB", "trainable", "samples/s", "under budget"],
                    rows, "lllrrrc"))


STUDY_INTRO = """
A study repeated with `lorabench sweep` on one model, every method trained and evaluated by the same code on the
same data: each method's best setting as `lorabench best` reports it (`bench/study.py` reads the sweep folder).
"sweep val": the figure the best rate was chosen on (mean ± sample std over the seeds at that rate; the sweep's
own evaluation, a label-stratified sample where the config says so). "final val" and "final test": the final
pass, each best setting trained again alone (one seed) and scored on every row, with its 95% bootstrap interval.
Train time and peak memory come from runs that trained alone (peak memory: the process's peak RSS on CPU,
loading included). λ_max: the largest eigenvalue of the training loss's Hessian at init, on one block.
"""


def _pct(m: dict[str, Any] | None) -> str:
    if not m:
        return "–"
    ci = m.get("accuracy_ci")
    return f"{100 * m['accuracy']:.2f}" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def _pm(stat: dict[str, Any] | None) -> str:
    if not stat:
        return "–"
    return f"{100 * stat['mean']:.2f}" + (f" ± {100 * stat['std']:.2f}" if stat.get("std") is not None else "")


def _study_rate(r: Result) -> str:
    return fmt(r["best_lr"], "{:.3g}") + (f" (η_B {r['lr_b']:.3g})" if r.get("lr_b") else "")


@renderer("study", "Studies repeated on a real language model", intro=STUDY_INTRO)
def render_study(result: Result) -> str:
    ms = result["methods"]
    fin = any(r.get("final_validation") for r in ms)
    lam = any(r.get("lambda_max") for r in ms)
    n = next((r["final_n"] for r in ms if r.get("final_n")), {}) or {}
    head = ["method", "best lr", *(["λ_max"] if lam else []), "sweep val acc (%)", "sweep macro-F1 (%)", "seeds",
            *([f"final val, {n.get('validation', '')} rows (%)", f"final test, {n.get('test', '')} rows (%)"]
              if fin else []), "train s", "peak MB", "trainable", "trials"]
    rows = [[r["method"], _study_rate(r), *([fmt(r.get("lambda_max"), "{:.4g}")] if lam else []), _pm(r["accuracy"]),
             _pm(r.get("macro_f1")), str(r["seeds"]),
             *([_pct(r.get("final_validation")), _pct(r.get("final_test"))] if fin else []),
             fmt(r.get("train_seconds"), "{:.0f}"), fmt(r.get("peak_memory_mb"), "{:.0f}"),
             fmt(r.get("trainable_params"), "{:,}"), str(r["trials"])] for r in ms]
    lines = [f"{result['title']}\n\n" if result.get("title") else "",
             table(head, rows, "ll" + "r" * (len(head) - 2)), "\n"]
    majority = next((r["majority"] for r in ms if r.get("majority") is not None), None)
    facts = [f"Spread of the peaks (sweep val): {100 * result['spread']:.2f} accuracy points"
             + (f"; majority class {100 * majority:.2f}%" if majority is not None else "") + "."]
    wall = [f"sweep {result['sweep_seconds'] / 60:.1f} min" if result.get("sweep_seconds") else None,
            f"final pass {result['final_pass_seconds'] / 60:.1f} min" if result.get("final_pass_seconds") else None]
    if result.get("unfinished"):
        facts.append("Not finished when recorded: " + ", ".join(f"{n} {k}" for k, n in result["unfinished"].items())
                     + " (the figures above may move when the sweep is resumed).")
    if any(wall):
        facts.append(f"Wall time ({result['finished_trials']} trials): " + ", ".join(w for w in wall if w) + ".")
    claim = result.get("rate_vs_curvature")
    if claim:
        facts.append(f"Best rate against λ_max over {claim['n']} methods: Spearman ρ = {claim['spearman_rho']:+.2f}; "
                     f"log-log slope {claim['slope']:+.2f} ± {claim['slope_stderr']:.2f} (R² = {claim['r2']:.2f}; "
                     "the classical 2/λ bound predicts −1).")
    for r in ms:
        curve = ", ".join(f"{c['lr']:.3g}" + (f"/{c['axes']['lr_b']:.3g}" if (c.get("axes") or {}).get("lr_b") else "")
                          + f": {fmt(None if c['accuracy'] is None else 100 * c['accuracy'], '{:.1f}')}"
                          for c in r.get("curve", []))
        facts.append(f"{r['method']} by rate (sweep val %): {curve}.")
    return "".join(lines) + "".join(f"- {f}\n" for f in facts)


GENERATION_INTRO = """
Greedy decoding of Alpaca-formatted GSM8K questions with lorabench's decoder (left padding, KV cache), batched
and one prompt at a time, in one process, on a model built locally with random weights. Tokens per second count
new tokens only, over the whole decode (prompt prefill included). "Same tokens": prompts whose batched output
equals the one-at-a-time output token for token.
"""


@renderer("generation", "Generation throughput: batched vs one at a time", intro=GENERATION_INTRO)
def render_generation(result: Result) -> str:
    rows = [[f"batched ({result['batch']})", fmt(result["batched_tokens_per_s"], "{:.1f}"),
             fmt(result["batched_seconds"], "{:.1f}")],
            ["one at a time", fmt(result["single_tokens_per_s"], "{:.1f}"), fmt(result["single_seconds"], "{:.1f}")]]
    return (f"`{result['arch']}` ({result['dtype']}, {result['device']}): {result['prompts']} prompts of "
            f"{result['prompt_tokens_mean']:.0f} tokens on average, {result['new']} new tokens each. Batched / one at "
            f"a time: **×{result['ratio']:.2f}**; same tokens for {result['same_tokens']}/{result['prompts']}.\n\n"
            + table(["decoding", "new tokens/s", "seconds"], rows, "lrr"))


def render_generic(result: Result) -> str:
    """Any result: its scalar top-level fields, in file order."""
    rows = [[f"`{k}`", fmt(v)] for k, v in result.items()
            if isinstance(v, (str, int, float, bool)) and k not in ("kind", "command", "created")]
    return table(["field", "value"], rows) if rows else "(no scalar fields)\n"


# --------------------------------------------------------------------------------------------- report

def load_results(folder: Path) -> tuple[list[tuple[Path, Result]], list[tuple[Path, str]]]:
    """(readable results, unreadable files with the reason), in file-name order."""
    good, bad = [], []
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            bad.append((path, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"))
            continue
        if not isinstance(data, dict):
            bad.append((path, "not a JSON object"))
            continue
        good.append((path, data))
    return good, bad


def render_one(path: Path, result: Result, fn: Callable[[Result], str]) -> str:
    """One result under its heading, with its provenance; falls back to the generic listing on error."""
    try:
        body = fn(result)
    except Exception as e:  # a renderer's bug must not lose the other results
        print(f"warning: {path.name}: renderer failed ({type(e).__name__}: {e}); listed generically",
              file=sys.stderr)
        body = render_generic(result)
    source = os.path.relpath(path, ROOT)
    return f"### {heading(result, path)}\n\n{body}\n{provenance_lines(result)}- File: `{source}`\n"


def build_report(folder: Path) -> str:
    """The whole BENCHMARKS.md text for the results in ``folder``."""
    results, bad = load_results(folder)
    by_kind: dict[str, list[tuple[Path, Result]]] = {}
    for path, result in results:
        by_kind.setdefault(str(result.get("kind") or "unknown"), []).append((path, result))
    now = datetime.now(UTC).isoformat(timespec="seconds")
    out = ["# Benchmarks\n\n",
           f"Generated by `bench/report.py` from `{os.path.relpath(folder, ROOT)}/*.json` on {now}; do not edit by "
           "hand. `make bench` reruns the CPU comparisons and regenerates this file; each section names the exact "
           "command that produced its numbers.\n"]
    if not results and not bad:
        out.append("\nNo results yet: run `make bench`.\n")
    known = [k for k in RENDERERS if k in by_kind]
    unknown = sorted(k for k in by_kind if k not in RENDERERS)
    for kind in known:
        r = RENDERERS[kind]
        out.append(f"\n## {r.title}\n\n" + (r.intro + "\n\n" if r.intro else ""))
        out += [render_one(p, res, r.render) + "\n" for p, res in by_kind[kind]]
    for kind in unknown:
        out.append(f"\n## Results of kind `{kind}`\n\nNo renderer for this kind yet (add one in `bench/report.py`); "
                   "its scalar fields:\n\n")
        out += [render_one(p, res, render_generic) + "\n" for p, res in by_kind[kind]]
    on_gpu = any(((res.get("machine") or {}).get("device") or {}).get("type") == "cuda" for _, res in results)
    if not on_gpu:
        out.append("\n## GPU\n\nNo GPU results yet. On a machine with CUDA, `make bench-gpu` adds the TinyLlama-1.1B "
                   "architecture (random weights) against the Trainer at micro-batch 1 × 16 and 16 with model-FLOPs "
                   "utilisation, a fused 12-point grid, every method's peak memory at rank 32 against the 8 GB budget, "
                   "and the Hessian time per block.\n")
    if bad:
        out.append("\n## Unreadable result files\n\n")
        out += [f"- `{os.path.relpath(p, ROOT)}`: {why}\n" for p, why in bad]
    return "".join(out).rstrip() + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/report.py",
        description="Regenerate BENCHMARKS.md from every JSON result in bench/results: one section per result "
                    "\"kind\" (compare, and any kind with a renderer registered in this file), other kinds listed "
                    "generically.")
    parser.add_argument("--results", type=Path, default=BENCH / "results", help="folder of *.json results")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md", help="the Markdown file to write")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Render every result file in the folder into one Markdown file."""
    args = parse_args(argv)
    if not args.results.is_dir():
        raise BenchError(f"{args.results}: results folder not found (run bench/compare.py first)")
    from lorabench.files import atomic_write_text

    atomic_write_text(args.out, build_report(args.results.resolve()))
    print(f"wrote {os.path.relpath(args.out)}")


if __name__ == "__main__":
    run_main(main)
