"""The ``lorabench`` command: a thin layer over the Python API."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperArgument

class Executor(StrEnum):
    local = "local"
    ray = "ray"


class Strategy(StrEnum):
    grid = "grid"
    adaptive = "adaptive"
    hessian = "hessian"


def _plain_usage(self: TyperArgument) -> str:
    return self.display_name_raw + ("..." if self.nargs != 1 else "")


TyperArgument._usage_display_name = _plain_usage  # type: ignore[method-assign]  # usage: CONFIG, as click writes it

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Compare LoRA variants fairly: one trainer, the same data, tuned learning rates, "
                       "measured time and memory.")


F = TypeVar("F", bound=Callable[..., Any])


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


def one_line_errors(fn: F) -> F:
    """Bad input (``LorabenchError``) and file-system errors end the command with one line and exit status 2;
    Ctrl-C with one line saying how to resume, and status 130."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        from .errors import LorabenchError

        try:
            return fn(*args, **kwargs)
        except LorabenchError as e:
            _fail(str(e))
        except OSError as e:
            _fail(f"{e.filename}: {e.strerror}" if e.filename else str(e))
        except KeyboardInterrupt:
            typer.echo("interrupted; run the same command again to resume (finished trials are kept)", err=True)
            raise typer.Exit(130) from None

    return run  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"lorabench {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool | None, typer.Option("--version", callback=_version, is_eager=True,
                                                          help="Print the version and exit.")] = None) -> None:
    pass


@app.command()
@one_line_errors
def train(
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="Run config (YAML), e.g. configs/sst2-minilm.yaml.")],
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Run folder (default: runs/METHOD-TIME).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", metavar="KEY=VALUE", help="Override a key: --set lr=1e-4 "
                                                      "--set model.name=tiny-llama (repeatable).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train and evaluate one method; write config, metrics, predictions, adapter and result.json."""
    from .config import load_config
    from .runner import format_result, run

    result = run(load_config(config, set_ or []), out, progress=not quiet, log=lambda m: typer.echo(m, err=True))
    typer.echo(format_result(result))
    for problem in result["artefact_errors"]:
        typer.echo(f"error: could not write {problem}", err=True)
    if result["status"] == "failed":
        typer.echo(result["error"], err=True)
    if result["status"] == "failed" or result["artefact_errors"]:
        raise typer.Exit(1)


@app.command()
@one_line_errors
def sweep(
    config: Annotated[Path, typer.Argument(metavar="SWEEP_CONFIG", help="Sweep config (YAML), e.g. configs/sweep-demo.yaml.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Sweep folder: store, trial runs, sweep.yaml.")],
    workers: Annotated[int, typer.Option("--workers", min=1, help="Trials at once on this machine.")] = 1,
    executor: Annotated[Executor, typer.Option("--executor", help="Where trials run: local processes or a Ray "
                                               "cluster.")] = Executor.local,
    strategy: Annotated[Strategy | None, typer.Option("--strategy", help="grid: every trial; adaptive: a coarse grid "
                                                      "refined around each method's best; hessian: the reference "
                                                      "method's grid, the others near the rate their λ_max "
                                                      "predicts (default: the config's).")] = None,
    address: Annotated[str | None, typer.Option("--address", help="Ray cluster address (default: a local instance).")] = None,
    store: Annotated[str | None, typer.Option("--store", envvar="LORABENCH_STORE",
                                              help="Store URL (default: sqlite in the sweep folder; also "
                                                   "$LORABENCH_STORE, which ps does not show), "
                                                 "e.g. postgresql://host/db to share a sweep between machines.")] = None,
    fuse: Annotated[str, typer.Option("--fuse", help="Train up to K compatible trials (same config but lr, seed "
                                      "and method options) in one fused forward/backward: an integer "
                                      "(1: off) or auto (as many as fit in half the free memory, at most 16).")] = "auto",
    retry: Annotated[str | None, typer.Option("--retry", help="Run again the trials that ended with these "
                                              "statuses, e.g. failed,oom (their attempt count is kept).")] = None,
    rebuild_store: Annotated[bool, typer.Option("--rebuild-store", help="Recover a lost or emptied store from the "
                                                "trial folders' result.json files, then stop.")] = False,
    costs: Annotated[bool, typer.Option("--costs/--no-costs", help="After the sweep, train each group's best "
                                        "setting again alone when it trained fused, so that time and memory are "
                                        "its own (the cost pass); --no-costs skips it, and `best` leaves those "
                                        "costs out until a sweep runs it.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Run a sweep, or resume it: finished trials are kept (also when the store was lost: their folders are
    adopted), interrupted ones rerun."""
    from .errors import ConfigError
    from .sweep import load_sweep, run_sweep

    if fuse != "auto" and not (fuse.isdigit() and int(fuse) >= 1):
        raise ConfigError(f"--fuse: expected a positive integer or auto (got {fuse!r})")
    counts = run_sweep(load_sweep(config), out, workers=workers, executor=executor.value,
                       strategy=strategy.value if strategy else None,
                       address=address, store_url=store, fuse=None if fuse == "auto" else int(fuse),
                       progress=not quiet, retry=[x.strip() for x in retry.split(",") if x.strip()] if retry else None,
                       rebuild=rebuild_store, costs=costs)
    typer.echo("trials: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))


@app.command()
@one_line_errors
def status(
    sweep_dir: Annotated[Path, typer.Argument(metavar="SWEEP_DIR", help="Sweep folder.")],
    store: Annotated[str | None, typer.Option("--store", envvar="LORABENCH_STORE",
                                              help="Store URL if not the folder's sqlite (also $LORABENCH_STORE).")] = None,
) -> None:
    """Counts by status, the running trials and an ETA."""
    from .sweep.summary import format_status, open_store, status as sweep_status

    typer.echo(format_status(sweep_status(open_store(sweep_dir, store))))


@app.command()
@one_line_errors
def best(
    sweep_dir: Annotated[Path, typer.Argument(metavar="SWEEP_DIR", help="Sweep folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    store: Annotated[str | None, typer.Option("--store", envvar="LORABENCH_STORE",
                                              help="Store URL if not the folder's sqlite (also $LORABENCH_STORE).")] = None,
) -> None:
    """Per method: best learning rate, accuracy and macro-F1 (mean ± std over seeds), cost, and the spread."""
    import json

    from .sweep.summary import best as sweep_best, format_best, open_store

    from .errors import ConfigError

    b = sweep_best(open_store(sweep_dir, store))
    if not b["trials"]:
        left = sum((b.get("unfinished") or {}).values())
        raise ConfigError(f"{sweep_dir}: no finished trial yet ({left} pending or running)")
    typer.echo(json.dumps(b, indent=2) if as_json else format_best(b))


@app.command()
@one_line_errors
def report(
    sweep_dir: Annotated[Path, typer.Argument(metavar="SWEEP_DIR", help="Sweep folder.")],
    out: Annotated[Path | None, typer.Option("-o", "--out",
                                                help="Report folder (default: SWEEP_DIR/report).")] = None,
    store: Annotated[str | None, typer.Option("--store", envvar="LORABENCH_STORE",
                                              help="Store URL if not the folder's sqlite (also $LORABENCH_STORE).")] = None,
    zoom_steps: Annotated[int | None, typer.Option("--zoom-steps", min=1, help="Steps shown by the zoomed "
                                                      "training-curve figure (default: the first quarter).")] = None,
) -> None:
    """A paper-ready report: figures, CSV and LaTeX tables, a generated summary, report.md and report.html."""
    from .report import write_report

    html = write_report(sweep_dir, out if out is not None else sweep_dir / "report", store_url=store,
                        zoom_steps=zoom_steps)
    typer.echo(f"report: {html}")


@app.command()
@one_line_errors
def hessian(
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="Run config (YAML), e.g. configs/sst2-minilm.yaml.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Result file (JSON), written atomically.")],
    set_: Annotated[list[str] | None, typer.Option("--set", metavar="KEY=VALUE", help="Override a run-config key: --set method=pissa "
                                                      "(repeatable).")] = None,
    samples: Annotated[int | None, typer.Option("--samples", help="Training examples in the loss "
                                                   "(default 500).")] = None,
    layers: Annotated[str | None, typer.Option("--layers", help="Layer indices of the blocks, e.g. 0,3 "
                                                  "('' for none; default: layer 0's first module).")] = None,
    modules: Annotated[str | None, typer.Option("--modules", help="Module names of the blocks, e.g. "
                                                   "query,value or self_attn.q_proj.")] = None,
    whole: Annotated[bool | None, typer.Option("--whole/--no-whole", help="Also the whole adapter "
                                                  "(default: no).")] = None,
    tol: Annotated[float | None, typer.Option("--tol", help="Relative tolerance (default 1e-3).")] = None,
    maxiter: Annotated[int | None, typer.Option("--maxiter", help="Most HVPs per block "
                                                   "(default 200).")] = None,
    magnitude: Annotated[bool | None, typer.Option("--magnitude/--no-magnitude", help="Include DoRA's "
                                                      "magnitude vector in its blocks (default: no, lora_A and "
                                                      "lora_B only, as the study).")] = None,
    cache: Annotated[bool | None, typer.Option("--cache/--no-cache", help="Keep each block's gradient graphs "
                                                  "between products (default: when they fit in half the free "
                                                  "memory).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
) -> None:
    """λ_max and λ_min of the training loss's Hessian w.r.t. the adapter at init, per block and whole."""
    from .config import load_config
    from .files import atomic_write_json
    from .hessian import format_result, hessian_config, measure

    cfg = load_config(config, set_ or [])
    given = {"samples": samples, "layers": layers, "modules": modules, "whole": whole, "magnitude": magnitude,
             "tol": tol, "maxiter": maxiter, "cache": cache}
    hcfg = hessian_config({k: v for k, v in given.items() if v is not None}, "hessian")
    result = measure(cfg, hcfg, log=(lambda m: None) if quiet else (lambda m: typer.echo(m, err=True)),
                     progress=not quiet)
    atomic_write_json(out, result)
    typer.echo(format_result(result, out))


@app.command("suggest-lr")
@one_line_errors
def suggest_lr(
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="Run config (YAML): model, data, rank, targets.")],
    methods: Annotated[str, typer.Option("--methods", help="Comma-separated methods to predict, e.g. "
                                         "pissa,olora,loraplus.")],
    reference_lr: Annotated[float | None, typer.Option("--reference-lr", help="The reference method's best "
                                                          "learning rate, if known.")] = None,
    from_sweep: Annotated[Path | None, typer.Option("--from", metavar="SWEEP_DIR", help="A sweep folder holding the "
                                                    "reference method's best rate (`lorabench best`'s).")] = None,
    reference: Annotated[str, typer.Option("--reference", help="The method whose rate is known.")] = "lora",
    exponent: Annotated[float, typer.Option("--exponent",
                                            help="γ in lr_m = lr_ref · (λ_ref / λ_m)^γ; 1 is the 2/λ stability "
                                                 "argument.")] = 1.0,
    set_: Annotated[list[str] | None, typer.Option("--set", metavar="KEY=VALUE", help="Override a run-config key "
                                                   "(repeatable).")] = None,
    samples: Annotated[int | None, typer.Option("--samples", help="Training examples in the loss (default 500).")] = None,
    layers: Annotated[str | None, typer.Option("--layers", help="Layer indices of the blocks (default: layer 0's "
                                                  "first adapted module).")] = None,
    modules: Annotated[str | None, typer.Option("--modules", help="Module names of the blocks.")] = None,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Also write the result (JSON), atomically.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
) -> None:
    """Each method's learning rate predicted from a tuned reference's, by λ_max of the loss Hessian at init:
    lr_m = lr_ref · (λ_ref / λ_m)^γ, every method measured on the same blocks and examples. Says how the
    argument applies to methods with two rates (LoRA+), a projected optimiser (LoFT) or other trained parameters."""
    from .config import load_config
    from .errors import ConfigError
    from .files import atomic_write_json
    from .sweep.suggest import format_suggestion, reference_lr_from, suggest_lr as predict

    if (reference_lr is None) == (from_sweep is None):
        raise ConfigError("give the reference's best rate with --reference-lr or --from SWEEP_DIR (one of them)")
    cfg = load_config(config, set_ or [])
    lr_ref = reference_lr if reference_lr is not None else reference_lr_from(from_sweep, reference, cfg)  # type: ignore[arg-type]
    given = {"samples": samples, "layers": layers, "modules": modules}
    result = predict(cfg, [m.strip() for m in methods.split(",") if m.strip()], reference=reference,
                     reference_lr=lr_ref, exponent=exponent, hessian={k: v for k, v in given.items() if v is not None},
                     log=(lambda m: None) if quiet else (lambda m: typer.echo(m, err=True)), progress=not quiet)
    if out is not None:
        atomic_write_json(out, result)
    typer.echo(format_suggestion(result))


@app.command("methods")
def list_methods(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Every option and fixed setting of each method, "
                                          "its default and the source of that default (paper, authors' code, "
                                          "PEFT, the studies), with how the others differ.")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="The same as Markdown tables (docs/methods.md).")] = False,
) -> None:
    """List the registered methods: name, what it does, paper (--verbose: their settings and sources)."""
    from .methods import catalogue, method_classes

    if verbose or markdown:
        typer.echo(catalogue.markdown() if markdown else catalogue.text(), nl=False)
        return
    classes = method_classes()
    w = max(len(c.name) for c in classes)
    for c in classes:
        typer.echo(f"{c.name:<{w}}  {c.summary}  [{c.paper}]")


@app.command("config")
@one_line_errors
def show_config(
    config: Annotated[Path | None, typer.Argument(metavar="CONFIG", help="Run config (YAML); none: the defaults.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", metavar="KEY=VALUE", help="Override a key (repeatable).")] = None,
) -> None:
    """Print the fully resolved run config: every key with its default filled in, as a run records it."""
    import yaml

    from .config import load_config

    typer.echo(yaml.safe_dump(load_config(config, set_ or []).dump(), sort_keys=False, allow_unicode=True), nl=False)


@app.command("export")
@one_line_errors
def export_cmd(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A finished run folder (with adapter/).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Folder to write (must not exist or be empty).")],
    merged: Annotated[bool, typer.Option("--merged", help="Write the base model with the adapter merged in, and its "
                                         "tokenizer, for serving (vLLM, TGI); default: the adapter alone.")] = False,
) -> None:
    """Export a run's adapter (plain PEFT, loadable onto the original base), or the merged full model."""
    from .export import export

    typer.echo(f"wrote {export(run_dir, out, merged=merged)}")


@app.command("eval")
@one_line_errors
def eval_cmd(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A finished causal-LM run folder (with adapter/).")],
    harness: Annotated[str, typer.Option("--harness", metavar="TASKS", help="lm-evaluation-harness tasks, comma-"
                                         "separated. Offline definitions of the staged files: gsm8k, arc_easy, "
                                         "arc_challenge, openbookqa, piqa, social_iqa, boolq, winogrande; any other "
                                         "name is the harness's own task (it fetches its data).")],
    limit: Annotated[int | None, typer.Option("--limit", help="Evaluate the first N documents of each task.")] = None,
    num_fewshot: Annotated[int | None, typer.Option("--num-fewshot", help="Few-shot examples (default: each "
                                                    "task's own, e.g. 5 for gsm8k).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Documents per forward pass.")] = 8,
    device: Annotated[str | None, typer.Option("--device", help="cpu or cuda; default: the run's device setting.")] = None,
    data_root: Annotated[Path | None, typer.Option("--data-root", help="Folder holding math/ and commonsense/ "
                                                   "(default: $LORABENCH_DATA_ROOT).")] = None,
    max_length: Annotated[int | None, typer.Option("--max-length", help="Context in tokens (default: the model's "
                                                   "own, from its config).")] = None,
) -> None:
    """Run lm-evaluation-harness on a run's adapter (loaded onto the original base), beside the study's
    generation protocol; writes RUN_DIR/harness/results.json and one samples file per task."""
    from .harness import headline, run_harness

    record = run_harness(run_dir, [t.strip() for t in harness.split(",")], data_root=data_root, limit=limit,
                         num_fewshot=num_fewshot, batch_size=batch_size, device=device, max_length=max_length)
    for task, metric, value in headline(record):
        typer.echo(f"{task:<16} {metric:<32} {value:.4f}")
    typer.echo(f"wrote {Path(run_dir) / 'harness' / 'results.json'}")


@app.command("evaluators")
def list_evaluators() -> None:
    """List the evaluators of generative tasks: name, scoring rule, default fields and generation budget."""
    import sys

    from .evaluators.registry import EVALUATORS

    w = max(len(n) for n in EVALUATORS)
    for name, cls in EVALUATORS.items():
        rule = (sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[0].replace("``", "'")
        typer.echo(f"{name:<{w}}  {rule}")
        typer.echo(f"{'':<{w}}  fields: prompt {cls.prompt_field!r}, answer {cls.answer_field!r}; at most "
                   f"{cls.max_new_tokens} new tokens; options: {', '.join(cls.Options.model_fields) or 'none'}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
