"""The command line: exit status 2 and one line for bad input, nothing left behind."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from lorabench.cli import app
from lorabench.config import load_config
from lorabench.errors import ConfigError

runner = CliRunner()

DOTTED = ["method=loraplus", "rank=4", "alpha=8", "lr=1e-4", "steps=7", "batch_size=2", "grad_accum=3",
          "eval_every=5", "seed=3", "model.name=tiny-llama", "model.head=lm", "data.dir=/x", "data.n_train=99",
          "loraplus_ratio=4"]


def test_every_documented_key_works_with_set():
    c = load_config("configs/sst2-minilm.yaml", DOTTED)
    assert (c.method, c.rank, c.alpha, c.lr, c.steps, c.batch_size, c.grad_accum, c.eval_every, c.seed) == \
        ("loraplus", 4, 8, 1e-4, 7, 2, 3, 5, 3)
    assert (c.model.name, c.model.head, c.data.dir, c.data.n_train, c.options()) == \
        ("tiny-llama", "lm", "/x", 99, {"loraplus_ratio": 4.0})


def test_resolved_config_fills_method_defaults():
    assert load_config(None, ["method=loraplus"]).dump()["loraplus_ratio"] == 16.0
    assert "loraplus_ratio" not in load_config(None, ["method=lora"]).dump()


@pytest.mark.parametrize("sets, message", [
    (["lr=-1"], "lr: Input should be greater than 0 (got -1)"),
    (["lrr=1"], "lrr: unknown config key"),
    (["model.nme=x"], "model.nme: unknown config key"),
    (["method=dorka"], "method: unknown method 'dorka'"),
    (["loraplus_ratio=4"], "loraplus_ratio: option not taken by method 'lora' (it belongs to 'loraplus')"),
    (["rank=0"], "rank: Input should be greater than 0"),
    (["model.head=seq"], "model.head: Input should be 'cls' or 'lm'"),
])
def test_bad_values_name_the_key(sets, message):
    with pytest.raises(ConfigError) as e:
        load_config("configs/sst2-minilm.yaml", sets)
    assert message in str(e.value) and "\n" not in str(e.value)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lorabench.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_bad_data_exits_2_with_one_line_and_writes_nothing(tmp_path):
    bad = tmp_path / "data"
    bad.mkdir()
    (bad / "train.tsv").write_text("sentence\tlabel\ngood\t1\nbad\t7\n")
    (bad / "dev.tsv").write_text("sentence\tlabel\nok\t1\n")
    out = tmp_path / "run"
    proc = _cli("train", "configs/tiny-llama.yaml", "-o", str(out), "--set", f"data.dir={bad}")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {bad / 'train.tsv'}:3: field 'label': '7' is not one of the classes " \
        "['0', '1'] (declared in data.labels)"
    assert not out.exists()


def test_bad_key_exits_2(glue_dir, tmp_path):
    r = runner.invoke(app, ["train", "configs/tiny-llama.yaml", "-o", str(tmp_path / "r"), "--set", "rank=100",
                            "--set", f"data.dir={glue_dir}", "--set", "data.n_train=400",
                            "--set", "data.n_eval=null"])
    assert r.exit_code == 2 and "rank: 100 exceeds the dimension 32" in r.output
    assert not (tmp_path / "r").exists()


def test_invalid_yaml_names_file_and_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("method: lora\nrank: [8\n")
    r = runner.invoke(app, ["train", str(cfg)])
    assert r.exit_code == 2 and f"{cfg}:3: invalid YAML" in r.output


def test_methods_and_version():
    r = runner.invoke(app, ["methods"])
    assert r.exit_code == 0 and r.output.splitlines()[0].startswith("lora ")
    assert {line.split()[0] for line in r.output.splitlines()} >= {"lora", "init_b", "lora_xs", "loraplus", "pissa"}
    v = runner.invoke(app, ["--version"])
    assert v.exit_code == 0 and v.output.startswith("lorabench ")


def test_train_cli_end_to_end(glue_dir, tmp_path):
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", "configs/tiny-llama.yaml", "-o", str(out), "-q", "--set", f"data.dir={glue_dir}",
                            "--set", "steps=4", "--set", "eval_every=2", "--set", "data.n_train=400",
                            "--set", "data.n_eval=null"])
    assert r.exit_code == 0, r.output
    assert "status            ok" in r.output and (out / "result.json").is_file()
    again = runner.invoke(app, ["train", "configs/tiny-llama.yaml", "-o", str(out), "--set", f"data.dir={glue_dir}"])
    assert again.exit_code == 2 and "already holds a finished run" in again.output


def test_light_commands_do_not_import_torch(tmp_path, glue_dir):
    """--help, methods, evaluators, config, status and best start without torch, transformers or PEFT (checked in a
    fresh interpreter); best on a sweep with no finished trial exits 2 with one line."""
    import subprocess
    import sys

    from lorabench.sweep.store import Store, default_url

    (tmp_path / "S").mkdir()
    Store(default_url(tmp_path / "S")).close()
    code = ("import sys; from typer.testing import CliRunner; from lorabench.cli import app\n"
            f"for args in (['--help'], ['methods'], ['methods', '-v'], ['evaluators'], ['config', 'configs/tiny-llama.yaml'], "
            f"['status', {str(tmp_path / 'S')!r}]):\n"
            "    r = CliRunner().invoke(app, args); assert r.exit_code == 0, (args, r.output)\n"
            f"r = CliRunner().invoke(app, ['best', {str(tmp_path / 'S')!r}])\n"
            "assert r.exit_code == 2 and 'no finished trial yet (0 pending or running)' in r.output, r.output\n"
            "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_store_and_folder_errors_are_one_line(tmp_path, glue_dir):
    """A damaged sweep.db, a bad or unreachable store URL (its password masked) and an unwritable run folder each end
    with one line and exit status 2; nothing is loaded or written first."""
    (tmp_path / "S").mkdir()
    (tmp_path / "S" / "sweep.db").write_bytes(b"SQLite format 3\x00" + b"\x00" * 50)  # truncated
    for args, says in ((["best", str(tmp_path / "S")], "sweep.db: cannot be opened"),
                       (["status", str(tmp_path / "S")], "sweep.db: cannot be opened"),
                       (["best", str(tmp_path), "--store", "postgresql://me:s3cret@127.0.0.1:9/db"], "***"),
                       (["best", str(tmp_path), "--store", "nonsense://x"], "store nonsense://x: cannot be opened"),
                       (["train", "configs/tiny-llama.yaml", "-o", "/proc/lorabench-run", "--set",
                         f"data.dir={glue_dir}"], "-o: /proc/lorabench-run: cannot write there")):
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and says in r.output and "s3cret" not in r.output, (args, r.output)
        assert len(r.output.strip().splitlines()) == 1, r.output


def test_the_recorded_config_is_what_runs(glue_dir, tmp_path):
    """bf16 autocast on a CPU, more dev rows than the file has, and a doubled label column are refused with one line
    instead of running something other than what the record would say."""
    import shutil

    dup = tmp_path / "dup"
    shutil.copytree(glue_dir, dup)
    body = (dup / "train.tsv").read_text().splitlines()
    (dup / "train.tsv").write_text("\n".join(["sentence\tlabel\tlabel"] + [f"{x}\t1" for x in body[1:]]) + "\n")
    bom = tmp_path / "bom"
    shutil.copytree(glue_dir, bom)
    (bom / "dev.tsv").write_bytes(b"\xef\xbb\xbf" + (bom / "dev.tsv").read_bytes())
    base = ["train", "configs/tiny-llama.yaml", "-q", "--set", "data.n_train=400", "--set", "steps=1",
            "--set", "device=cpu", "--set", "data.n_eval=null", "--set", "save_adapter=false"]
    for sets, says in ((["bf16=true"], "bf16: bf16 autocast needs a CUDA device"),
                       (["data.n_eval=5000"], "data.n_eval: 5000 exceeds the 64 rows of"),
                       ([f"data.dir={dup}"], "train.tsv:1: column 'label' appears 2 times")):
        out = tmp_path / "r"
        r = runner.invoke(app, [*base, "-o", str(out), "--set", f"data.dir={glue_dir}",
                                *[a for s in sets for a in ("--set", s)]])
        assert r.exit_code == 2 and says in r.output and not out.exists(), (sets, r.output)
    r = runner.invoke(app, [*base, "-o", str(tmp_path / "b"), "--set", f"data.dir={bom}"])  # a byte-order mark is read
    assert r.exit_code == 0, r.output


def test_store_url_from_the_environment_and_stale_temporary_files_are_removed(tmp_path, glue_dir, monkeypatch):
    from lorabench.sweep.store import Store, default_url

    (tmp_path / "S").mkdir()
    Store(default_url(tmp_path / "S")).close()
    monkeypatch.setenv("LORABENCH_STORE", default_url(tmp_path / "S"))
    r = runner.invoke(app, ["status", str(tmp_path / "elsewhere")])  # no sweep.db there: the URL is the env's
    assert r.exit_code == 0 and "0 trials" in r.output, r.output
    out = tmp_path / "run"
    out.mkdir()
    (out / ".result.json.abc.tmp").write_text("half")
    (out / ".adapter.tmp").mkdir()
    r = runner.invoke(app, ["train", "configs/tiny-llama.yaml", "-o", str(out), "-q", "--set", f"data.dir={glue_dir}",
                            "--set", "steps=2", "--set", "data.n_train=400", "--set", "data.n_eval=null"])
    assert r.exit_code == 0, r.output
    assert not list(out.glob(".*.tmp")) and not (out / ".adapter.tmp").exists() and (out / "adapter").is_dir()


def test_best_status_and_report_work_on_a_read_only_file_system(tmp_path):
    """A finished sweep on a read-only mount (here a read-only bind mount, which needs root) is read without a write."""
    import subprocess

    from .test_sweep import _store_with

    _store_with(tmp_path, [("lora", 1e-3, 0, "ok", 0.8), ("lora", 1e-2, 0, "ok", 0.7)]).close()
    mounted = subprocess.run(f"mount --bind {tmp_path} {tmp_path} && mount -o remount,ro,bind {tmp_path}",
                             shell=True, capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot make a read-only bind mount here: {mounted.stderr.strip()}")
    try:
        for args in (["best", str(tmp_path / "S")], ["status", str(tmp_path / "S")]):
            r = runner.invoke(app, args)
            assert r.exit_code == 0, (args, r.output)
        assert "0.001" in runner.invoke(app, ["best", str(tmp_path / "S")]).output
    finally:
        subprocess.run(["umount", "-l", str(tmp_path)], check=True)  # lazily: pooled store connections may be open
