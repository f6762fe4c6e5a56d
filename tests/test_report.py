"""`lorabench report`: files, numbers equal to best(), a self-contained HTML that a real browser renders,
a summary written from the data, and the optional figures (LoRA+ grid, rank, λ_max) when their data exist."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lorabench.cli import app
from lorabench.report import write_report
from lorabench.sweep import best, load_sweep, open_store, run_sweep
from lorabench.sweep.store import Store, default_url

from .conftest import run_trials_here

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

ALWAYS = ["report.md", "report.html", "summary.txt", "figures/accuracy_vs_lr.png", "figures/accuracy_vs_lr.pdf",
          "figures/training_curves.png", "figures/training_curves_zoom.png",
          *[f"tables/{n}.{e}" for n in ("comparison", "hyperparameters", "accuracy_by_lr", "setup")
            for e in ("csv", "tex")],
          "tables/trials.csv", "tables/provenance.csv"]
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|<script[^>]*\bsrc\s*=|<link\b|@import"""
                      r"""|url\(\s*["']?\s*(?:https?:)?//""", re.I)


def sweep_file(tmp: Path, base: dict, space: dict) -> Path:
    p = tmp / "sweep.yaml"
    p.write_text(yaml.safe_dump({"base": str(ROOT / "configs/tiny-llama.yaml"), "set": base, "space": space}))
    return p


@pytest.fixture(scope="module")
def real(tmp_path_factory, glue_dir, tiny_bert_dir):
    """A real sweep (tiny BERT classifier, 2 methods × 3 rates, lr=10 diverges) and its report made by the CLI."""
    tmp = tmp_path_factory.mktemp("report-real")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LORABENCH_CACHE", str(tmp / "cache"))
        run_trials_here(mp)
        p = sweep_file(tmp, {"steps": 20, "eval_every": 5, "save_adapter": False, "max_grad_norm": None,
                             "model": {"name": str(tiny_bert_dir), "head": "cls"},
                             "data": {"dir": str(glue_dir), "n_train": 200, "n_eval": 32}},
                       {"methods": ["lora", "pissa"], "lr": [1e-3, 1e-2, 10.0]})
        counts = run_sweep(load_sweep(p), tmp / "S", progress=False)
        res = runner.invoke(app, ["report", str(tmp / "S"), "-o", str(tmp / "R")])
    assert counts.get("diverged", 0) >= 1, counts
    assert res.exit_code == 0, res.output
    return tmp / "S", tmp / "R", res.output


def test_every_promised_file_exists_and_the_cli_prints_the_html_path(real):
    _, out, printed = real
    for name in ALWAYS:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for png in (out / "figures").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert printed.strip().splitlines()[-1].endswith(str(out / "report.html"))
    assert not list((out / "figures").glob("lr_heatmap_*")) and not list((out / "figures").glob("sensitivity_*"))
    assert not (out / "figures/best_lr_vs_lambda_max.png").exists()  # no λ_max measured here


def _per_method_best(b: dict) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for t in b["table"]:
        if t["method"] not in out or t["accuracy"]["mean"] > out[t["method"]]["accuracy"]["mean"]:
            out[t["method"]] = t
    return out


def test_comparison_table_has_the_numbers_of_best(real):
    sweep, out, _ = real
    b = _per_method_best(best(open_store(sweep)))
    rows = list(csv.DictReader((out / "tables/comparison.csv").open()))
    baseline = [r for r in rows if r["method"] == "majority class"]
    rows = [r for r in rows if r["method"] != "majority class"]
    assert sorted(r["method"] for r in rows) == sorted(b)
    assert len(baseline) == 1 and 0.5 <= float(baseline[0]["accuracy_mean"]) < 1  # the most frequent class's share
    for r in rows:
        t = b[r["method"]]
        assert float(r["best_lr"]) == t["best_lr"]
        std = float(r["accuracy_std"]) if r["accuracy_std"] else None  # one seed: no std
        assert (float(r["accuracy_mean"]), std) == (t["accuracy"]["mean"], t["accuracy"]["std"])
        f1_std = float(r["macro_f1_std"]) if r["macro_f1_std"] else None
        assert (float(r["macro_f1_mean"]), f1_std) == (t["macro_f1"]["mean"], t["macro_f1"]["std"])
        assert int(r["trainable_params"]) == t["trainable_params"] and int(r["seeds"]) == t["seeds"]
        assert float(r["train_seconds"]) == t["train_seconds"] and float(r["peak_memory_mb"]) == t["peak_memory_mb"]
        assert r["memory_kind"] == t["memory_kind"] and r["lambda_max"] == ""
    tex = (out / "tables/comparison.tex").read_text()
    assert r"\toprule" in tex and all(f"{100 * t['accuracy']['mean']:.2f}" in tex for t in b.values())
    trials = list(csv.DictReader((out / "tables/trials.csv").open()))
    assert {r["status"] for r in trials} >= {"ok", "diverged"} and len(trials) == 6


def test_summary_is_written_from_the_data(real):
    sweep, out, _ = real
    text = (out / "summary.txt").read_text()
    b = _per_method_best(best(open_store(sweep)))
    peaks = {m: t["accuracy"]["mean"] for m, t in b.items()}
    assert f"span {100 * (max(peaks.values()) - min(peaks.values())):.2f} accuracy points" in text
    top = max(peaks, key=peaks.get)
    assert f"{100 * peaks[top]:.2f}% dev accuracy" in text
    rows = open_store(sweep).rows()
    diverged = [r for r in rows if r["status"] == "diverged"]
    assert f"{len(diverged)} diverged at 10" in text
    assert f"{len(rows)} trials (grid search) of 2 methods" in text
    md = (out / "report.md").read_text()
    assert all(line in md for line in text.splitlines())


def test_html_is_self_contained(real):
    _, out, _ = real
    html = (out / "report.html").read_text()
    assert not EXTERNAL.search(html), EXTERNAL.search(html).group()
    srcs = re.findall(r"<img[^>]*\ssrc=\"([^\"]*)\"", html)
    assert len(srcs) == len(list((out / "figures").glob("*.png"))) >= 3
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<script" not in html


def chromium() -> str:
    """The chromium binary; installed from Debian's packages when missing and we are root, else a skip."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and cannot be: not root, or no apt-get "
                    "(apt-get install chromium chromium-driver)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium", "chromium-driver"]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
        if r.returncode:
            pytest.skip(f"chromium could not be installed: {' '.join(cmd)} exited {r.returncode}: "
                        f"{r.stderr.strip()[-300:]}")
    found = shutil.which("chromium")
    if not found:
        pytest.skip("apt-get installed chromium but no chromium binary is on PATH")
    return found


PROBE = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0 && i.naturalHeight > 0); });
  document.title = "IMGCHECK " + imgs.length + " " + bad.length + " " +
    imgs.map(function (i) { return i.naturalWidth; }).join(",");
});
</script>"""


def test_headless_chromium_renders_every_figure(real, tmp_path):
    exe = chromium()
    _, out, _ = real
    html = (out / "report.html").read_text()
    probe = tmp_path / "probe.html"  # a test-only copy: the report itself has no script
    probe.write_text(html.replace("</body>", PROBE + "</body>"))
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
           "--dump-dom", probe.as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    m = re.search(r"<title>IMGCHECK (\d+) (\d+) ([\d,]*)</title>", r.stdout)
    assert m, f"the probe did not run: {r.stdout[:300]!r} {r.stderr[-1000:]!r}"
    n, bad, widths = int(m[1]), int(m[2]), [int(w) for w in m[3].split(",") if w]
    assert n == html.count("<img ") >= 3 and bad == 0 and all(w > 100 for w in widths), m.group()


def test_cli_errors_are_one_line_with_exit_2(tmp_path, glue_dir):
    res = runner.invoke(app, ["report", str(tmp_path / "nowhere"), "-o", str(tmp_path / "R")])
    assert res.exit_code == 2 and res.output.strip().count("\n") == 0 and "no sweep here" in res.output
    s = load_sweep(sweep_file(tmp_path, {"data": {"dir": str(glue_dir)}}, {"methods": ["lora"], "lr": [1e-3]}))
    (tmp_path / "S").mkdir()
    store = Store(default_url(tmp_path / "S"))
    store.add(s.trials)  # pending only
    store.close()
    res = runner.invoke(app, ["report", str(tmp_path / "S"), "-o", str(tmp_path / "R")])
    assert res.exit_code == 2 and res.output.strip().count("\n") == 0 and "no finished trial" in res.output
    assert not (tmp_path / "R").exists()


# --- the optional figures, on a sweep whose results are written directly into its store (no training) ---

def acc_of(method: str, lr: float, rank: int, seed: int, lr_b: float | None) -> float:
    peak = 1e-3 if method == "lora" else 3e-4
    x = abs(math.log10(lr / peak))
    return round(0.9 - 0.15 * x + 0.01 * (rank == 8) - 0.005 * seed - (0.02 if lr_b == 4e-3 else 0), 6)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, glue_dir):
    tmp = tmp_path_factory.mktemp("report-synthetic")
    s = load_sweep(sweep_file(tmp, {"steps": 40, "eval_every": 10, "data": {"dir": str(glue_dir)}}, {
        "methods": ["lora", "loraplus"], "lr": [1e-4, 1e-3, 1e-2], "rank": [4, 8], "seeds": [0, 1],
        "rate_grid": {"loraplus": {"lr": [1e-4, 3e-4, 1e-3], "lr_b": [1e-3, 4e-3]}}}))
    sweep = tmp / "S"
    sweep.mkdir()
    store = Store(default_url(sweep))
    store.set_meta("sweep", s.dump())
    store.set_meta("strategy", "grid")
    store.add(s.trials)
    for t in s.trials:
        assert store.claim(t.key, "me")
        lr_b = t.axes.get("lr_b")
        acc = acc_of(t.method, t.lr, t.axes["rank"], t.seed, lr_b)
        status = "diverged" if t.lr == 1e-2 and t.seed == 1 else "ok"
        folder = sweep / "trials" / t.key
        folder.mkdir(parents=True)
        steps = 40 if status == "ok" else 7
        lines = [{"step": i, "loss": 0.7 / i ** 0.3} | ({"eval_accuracy": acc * i / 40, "eval_macro_f1": acc * i / 41}
                                                      if i % 10 == 0 else {}) for i in range(1, steps + 1)]
        (folder / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        store.finish(t.key, "me", status, {
            "status": status, "method": t.method, "steps_done": steps,
            "final": {"accuracy": acc, "macro_f1": acc - 0.01} if status == "ok" else None,
            "train_seconds": 10.0 + t.axes["rank"], "peak_memory_mb": 100.0 + t.axes["rank"],
            "memory_kind": "cuda_max_memory_allocated", "trainable_params": 1000 * t.axes["rank"]}, None)
    store.close()
    return sweep


def test_optional_figures_appear_when_their_data_exist(synthetic, tmp_path, monkeypatch):
    import lorabench.report.data as report_data

    lam = {"lora": 500.0, "loraplus": 3000.0}

    def with_lambda(store):
        b = best(store)
        for t in b["table"]:
            t["lambda_max"] = lam[t["method"]] * (1 + t["group"].get("rank", 0) / 100)
        return b

    monkeypatch.setattr(report_data, "sweep_best", with_lambda)
    html = write_report(synthetic, tmp_path / "R")
    figs = {p.name for p in (tmp_path / "R/figures").glob("*.png")}
    assert {"lr_heatmap_loraplus_rank-4.png", "lr_heatmap_loraplus_rank-8.png", "sensitivity_rank.png",
            "best_lr_vs_lambda_max.png", "accuracy_vs_lr.png", "training_curves.png",
            "training_curves_zoom.png"} <= figs
    rows = {r["method"]: r for r in csv.DictReader((tmp_path / "R/tables/comparison.csv").open())}
    b_all = with_lambda(open_store(synthetic))["table"]
    b = {t["method"]: t for t in sorted(b_all, key=lambda t: t["accuracy"]["mean"])}
    assert float(rows["lora"]["lambda_max"]) == b["lora"]["lambda_max"]
    assert float(rows["lora"]["accuracy_std"]) == b["lora"]["accuracy"]["std"] > 0  # two seeds
    text = (tmp_path / "R/summary.txt").read_text()
    peak = {m: max(t["accuracy"]["mean"] for t in b_all if t["method"] == m) for m in ("lora", "loraplus")}
    assert peak["lora"] == peak["loraplus"]  # the synthetic store's best LoRA+ pair matches LoRA's peak
    assert f"lora and loraplus both peak at {100 * peak['lora']:.2f}% dev accuracy" in text
    assert "span 0.00 accuracy points" in text
    assert "loraplus peaks at a smaller rate, ×0.3 (0.0003)" in text
    assert "best lr × λ_max" in text and "across rank 4, 8" in text and "its best pair is lr = 0.0003, lr_b = 0.001" in text
    assert "2 diverged at 0.01 (lora)" in text
    assert html.read_text().count("<img ") == len(figs)
    hyper = (tmp_path / "R/tables/hyperparameters.csv").read_text()
    assert "lr_b" in hyper and "0.001;0.004" in hyper
