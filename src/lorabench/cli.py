"""The ``lorabench`` command: a thin layer over the Python API."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Compare LoRA variants fairly: one trainer, the same data, tuned learning rates, "
                       "measured time and memory.")


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"lorabench {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                          help="Print the version and exit.")] = None) -> None:
    pass


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="Run config (YAML), e.g. configs/sst2-minilm.yaml.")],
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Run folder (default: runs/METHOD-TIME).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a key: --set lr=1e-4 "
                                                      "--set model.name=tiny-llama (repeatable).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train and evaluate one method; write config, metrics, predictions, adapter and result.json."""
    from .errors import LorabenchError
    from .config import load_config
    from .runner import run

    try:
        cfg = load_config(config, set_ or [])
        result = run(cfg, out, progress=not quiet, log=lambda m: typer.echo(m, err=True))
    except LorabenchError as e:
        _fail(str(e))
    typer.echo(summary(result))
    if result["status"] == "failed":
        typer.echo(result["error"], err=True)
        raise typer.Exit(1)


def summary(r: dict) -> str:
    f = r.get("final") or {}
    b = r.get("best") or {}

    def num(x, fmt):
        return format(x, fmt) if isinstance(x, int | float) else "-"

    rows = [
        ("status", r["status"]), ("method", r["method"]),
        ("accuracy (final)", num(f.get("accuracy"), ".4f")), ("macro-F1 (final)", num(f.get("macro_f1"), ".4f")),
        ("accuracy (best)", f"{num(b.get('accuracy'), '.4f')} at step {b.get('step')}"),
        ("train_seconds", num(r["train_seconds"], ".1f")), ("samples/s", num(r.get("samples_per_second"), ".1f")),
        ("peak memory MB", f"{num(r['peak_memory_mb'], '.0f')} ({r['memory_kind']})"),
        ("trainable params", f"{r['trainable_params']:,}"), ("tokens seen", f"{r['tokens_seen']:,}"),
        ("run folder", r.get("run_dir", "")),
    ]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


@app.command()
def sweep(
    config: Annotated[Path, typer.Argument(help="Sweep config (YAML), e.g. configs/sweep-demo.yaml.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Sweep folder: store, trial runs, sweep.yaml.")],
    workers: Annotated[int, typer.Option("--workers", min=1, help="Trials at once on this machine.")] = 1,
    executor: Annotated[str, typer.Option("--executor", help="local or ray.")] = "local",
    strategy: Annotated[Optional[str], typer.Option("--strategy", help="grid or adaptive (default: the config's).")] = None,
    address: Annotated[Optional[str], typer.Option("--address", help="Ray cluster address (default: a local instance).")] = None,
    store: Annotated[Optional[str], typer.Option("--store", help="Store URL (default: sqlite in the sweep folder), "
                                                 "e.g. postgresql://host/db to share a sweep between machines.")] = None,
    fuse: Annotated[str, typer.Option("--fuse", help="Train up to K compatible trials (same config but lr, seed "
                                      "and method options) in one fused forward/backward: an integer "
                                      "(1: off) or auto (as many as fit in half the free memory, at most 16).")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Run a sweep, or resume it: finished trials are kept, interrupted ones rerun."""
    from .errors import ConfigError, LorabenchError
    from .sweep import load_sweep, run_sweep

    try:
        if fuse != "auto" and not (fuse.isdigit() and int(fuse) >= 1):
            raise ConfigError(f"--fuse: expected a positive integer or auto (got {fuse!r})")
        counts = run_sweep(load_sweep(config), out, workers=workers, executor=executor, strategy=strategy,
                           address=address, store_url=store, fuse=None if fuse == "auto" else int(fuse),
                           progress=not quiet)
    except LorabenchError as e:
        _fail(str(e))
    typer.echo("trials: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))


@app.command()
def status(
    sweep_dir: Annotated[Path, typer.Argument(help="Sweep folder.")],
    store: Annotated[Optional[str], typer.Option("--store", help="Store URL if not the folder's sqlite.")] = None,
) -> None:
    """Counts by status, the running trials and an ETA."""
    from .errors import LorabenchError
    from .sweep import open_store, status as sweep_status

    try:
        s = sweep_status(open_store(sweep_dir, store))
    except LorabenchError as e:
        _fail(str(e))
    typer.echo(f"{s['total']} trials ({s['strategy']}): " + ", ".join(f"{k}={v}" for k, v in sorted(s["counts"].items())))
    for r in s["running"]:
        typer.echo(f"  running {r['method']} lr={r['lr']:.3g} seed={r['seed']} step {r['step']}/{r['steps']} on {r['owner']}")
    if s["eta_seconds"] is not None:
        typer.echo(f"ETA ≈ {s['eta_seconds'] / 60:.1f} min")


@app.command()
def best(
    sweep_dir: Annotated[Path, typer.Argument(help="Sweep folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    store: Annotated[Optional[str], typer.Option("--store", help="Store URL if not the folder's sqlite.")] = None,
) -> None:
    """Per method: best learning rate, accuracy and macro-F1 (mean ± std over seeds), cost, and the spread."""
    import json

    from .errors import LorabenchError
    from .sweep import best as sweep_best, format_best, open_store

    try:
        b = sweep_best(open_store(sweep_dir, store))
    except LorabenchError as e:
        _fail(str(e))
    typer.echo(json.dumps(b, indent=2) if as_json else format_best(b))


@app.command()
def report(
    sweep_dir: Annotated[Path, typer.Argument(help="Sweep folder.")],
    out: Annotated[Optional[Path], typer.Option("-o", "--out",
                                                help="Report folder (default: SWEEP_DIR/report).")] = None,
    store: Annotated[Optional[str], typer.Option("--store", help="Store URL if not the folder's sqlite.")] = None,
    zoom_steps: Annotated[Optional[int], typer.Option("--zoom-steps", min=1, help="Steps shown by the zoomed "
                                                      "training-curve figure (default: the first quarter).")] = None,
) -> None:
    """A paper-ready report: figures, CSV and LaTeX tables, a generated summary, report.md and report.html."""
    from .errors import LorabenchError
    from .report import write_report

    try:
        html = write_report(sweep_dir, out if out is not None else sweep_dir / "report", store_url=store,
                            zoom_steps=zoom_steps)
    except LorabenchError as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"cannot write the report: {e}")
    typer.echo(f"report: {html}")


@app.command()
def hessian(
    config: Annotated[Path, typer.Argument(help="Run config (YAML), e.g. configs/sst2-minilm.yaml.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Result file (JSON), written atomically.")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a run-config key: --set method=pissa "
                                                      "(repeatable).")] = None,
    samples: Annotated[Optional[int], typer.Option("--samples", help="Training examples in the loss "
                                                   "(default 500).")] = None,
    layers: Annotated[Optional[str], typer.Option("--layers", help="Layer indices of the blocks, e.g. 0,3 "
                                                  "('' for none; default: layer 0's first module).")] = None,
    modules: Annotated[Optional[str], typer.Option("--modules", help="Module names of the blocks, e.g. "
                                                   "query,value or self_attn.q_proj.")] = None,
    whole: Annotated[Optional[bool], typer.Option("--whole/--no-whole", help="Also the whole adapter "
                                                  "(default: no).")] = None,
    tol: Annotated[Optional[float], typer.Option("--tol", help="Relative tolerance (default 1e-3).")] = None,
    maxiter: Annotated[Optional[int], typer.Option("--maxiter", help="Most HVPs per block "
                                                   "(default 200).")] = None,
    magnitude: Annotated[Optional[bool], typer.Option("--magnitude/--no-magnitude", help="Include DoRA's "
                                                      "magnitude vector in its blocks (default: no, lora_A and "
                                                      "lora_B only, as the study).")] = None,
    cache: Annotated[Optional[bool], typer.Option("--cache/--no-cache", help="Keep each block's gradient graphs "
                                                  "between products (default: when they fit in half the free "
                                                  "memory).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
) -> None:
    """λ_max and λ_min of the training loss's Hessian w.r.t. the adapter at init, per block and whole."""
    from .errors import ConfigError, LorabenchError
    from .config import load_config
    from .files import atomic_write_json
    from .hessian import hessian_config, measure

    def split(name: str, text: str | None, cast) -> list | None:
        if text is None:
            return None
        try:
            return [cast(x.strip()) for x in text.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(f"--{name}: expected comma-separated {'integers' if cast is int else 'names'} "
                              f"(got {text!r})") from None

    try:
        cfg = load_config(config, set_ or [])
        given = {"samples": samples, "layers": split("layers", layers, int), "modules": split("modules", modules, str),
                 "whole": whole, "magnitude": magnitude, "tol": tol, "maxiter": maxiter, "cache": cache}
        hcfg = hessian_config({k: v for k, v in given.items() if v is not None}, "hessian")
        result = measure(cfg, hcfg, log=(lambda m: None) if quiet else (lambda m: typer.echo(m, err=True)))
    except LorabenchError as e:
        _fail(str(e))
    try:
        atomic_write_json(out, result)
    except OSError as e:
        _fail(f"{out}: cannot write: {e}")
    w = max(len(b["block"]) for b in result["blocks"])
    for b in result["blocks"]:
        flag = "" if b["max"]["converged"] and b["min"]["converged"] else "  (not converged)"
        typer.echo(f"{b['block']:<{w}}  λ_max {b['lambda_max']:.6g}  λ_min {b['lambda_min']:.6g}  "
                   f"{b['params']:,} params  {b['hvps']} HVPs  {b['seconds']:.1f} s{flag}")
    typer.echo(f"{result['method']}: {result['samples']} examples, {result['loss_terms']:,} loss terms, "
               f"loss {result['loss']:.4f}; {result['seconds']:.1f} s in all; wrote {out}")


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


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
