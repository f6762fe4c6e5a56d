"""Generative fine-tuning: response-only loss, batched greedy generation, fused generation, scoring, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from lorabench import run
from lorabench.cli import app
from lorabench.config import SftData, validate
from lorabench.data import collate
from lorabench.errors import ConfigError, DataError
from lorabench.fuse import Fused, share_frozen
from lorabench.generate import finish, generate_many
from lorabench.losses import loss_of_logits, loss_sum, loss_tokens
from lorabench.methods import get_method
from lorabench.prepare import prepare
from lorabench.tasks import Sft, load_task
from lorabench.tiny_llama import build_llama, build_tokenizer

runner = CliRunner()
QUESTIONS = ["What is three plus four?", "How many legs do two cats have in total?", "Is seven prime?",
             "What is the sum of the first five positive integers, counted one at a time?", "Two?"]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def sft_dir(tmp_path) -> Path:
    write_jsonl(tmp_path / "train.jsonl", [{"question": q, "answer": f"Work.\nThe answer is: {i}"}
                                           for i, q in enumerate(QUESTIONS * 4)])
    write_jsonl(tmp_path / "test.jsonl", [{"question": q, "answer": f"#### {i}"} for i, q in enumerate(QUESTIONS)])
    return tmp_path


def sft_config(folder: Path, **over) -> dict:
    cfg = {"model": {"name": "tiny-llama", "max_length": 128},
           "data": {"kind": "sft", "dir": str(folder),
                    "train": {"path": "train.jsonl", "instruction": "question", "output": "answer"},
                    "eval": [{"name": "gsm8k", "evaluator": "gsm8k", "path": "test.jsonl"}], "max_new_tokens": 12},
           "rank": 4, "alpha": 8, "lr": 1e-3, "steps": 4, "batch_size": 4, "eval_every": 4, "save_adapter": False}
    cfg.update(over)
    return cfg


def test_loss_covers_exactly_the_response_and_eos(sft_dir, one_thread):
    p = prepare(validate(sft_config(sft_dir)))
    tok, enc = p.tokenizer, p.train
    b = collate(enc, [0, 5, 2], tok.pad_token_id)
    for row, i in enumerate([0, 5, 2]):
        prompt = tok(_alpaca(QUESTIONS[i % 5]))["input_ids"]
        response = tok(f"Work.\nThe answer is: {i}\n", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert enc.input_ids[i] == prompt + response
        targets = b["input_ids"][row][b["loss_mask"][row].bool()].tolist()
        assert targets == response  # the response tokens and EOS, nothing of the prompt, no padding
    assert loss_tokens(b, "lm") == sum(len(tok(f"Work.\nThe answer is: {i}\n", add_special_tokens=False)["input_ids"])
                                       + 1 for i in (0, 5, 2))
    # no gradient reaches the logits that predict prompt tokens or padding; every response position gets one
    p.model.eval()
    out = p.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
    out.logits.retain_grad()
    loss_of_logits(out.logits, b, "lm").backward()
    grad_norm = out.logits.grad.norm(dim=-1)[:, :-1]  # position t predicts token t + 1
    predicts_response = b["loss_mask"][:, 1:].bool()
    assert torch.all(grad_norm[~predicts_response] == 0)
    assert torch.all(grad_norm[predicts_response] > 0)
    with torch.no_grad():
        manual = torch.nn.functional.cross_entropy(out.logits[:, :-1][predicts_response].float(),
                                                   b["input_ids"][:, 1:][predicts_response], reduction="sum")
        torch.testing.assert_close(loss_sum(p.model, b, "lm"), manual)


def _alpaca(q: str) -> str:
    from lorabench.data.templates import ALPACA

    return ALPACA.replace("{instruction}", q)


def test_prompt_filling_the_window_leaves_an_example_without_loss(sft_dir, one_thread):
    p = prepare(validate(sft_config(sft_dir, model={"name": "tiny-llama", "max_length": 60})))
    long_prompts = sum(len(_tok()(_alpaca(q))["input_ids"]) >= 60 for q in QUESTIONS * 4)
    assert long_prompts > 0
    assert p.task.counts["train_without_loss"] == long_prompts
    assert all(len(ids) <= 60 for ids in p.train.input_ids)


def _tok():
    return build_tokenizer()


def reference_greedy(model, prompt: list[int], n: int, eos: int) -> list[int]:
    """One prompt at a time, no cache, no padding: the argmax of the last position, appended, n times."""
    ids, new = list(prompt), []
    for _ in range(n):
        with torch.no_grad():
            nxt = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
        new.append(nxt)
        ids.append(nxt)
        if nxt == eos:
            break
    return new


@pytest.mark.parametrize("adapted", [False, True])
def test_batched_left_padded_generation_equals_a_one_at_a_time_loop(adapted, one_thread):
    tok = _tok()
    model = build_llama("tiny-llama", tok, dtype=torch.float32, seed=1)
    if adapted:
        from lorabench.adapters import adapt

        torch.manual_seed(0)
        model = adapt(model, "lora", rank=4, alpha=8, target_modules="all-linear")
        with torch.no_grad():
            for n, q in model.named_parameters():
                if "lora_B" in n:
                    q.normal_(0, 0.05)
    model.eval()
    prompts = [tok(_alpaca(q))["input_ids"] for q in QUESTIONS] + [tok("the film")["input_ids"]]
    assert len({len(x) for x in prompts}) == len(prompts)  # mixed lengths: left padding is exercised
    gens = generate_many(lambda sizes, **kw: model(**kw), 1, prompts, tok, max_new_tokens=20, batch_size=4,
                         device=torch.device("cpu"))[0]
    for prompt, g in zip(prompts, gens):
        ref = finish(reference_greedy(model, prompt, 20, tok.eos_token_id), tok, tok.eos_token_id, [])
        assert g.tokens == ref.tokens and g.text == ref.text
    again = generate_many(lambda sizes, **kw: model(**kw), 1, prompts[::-1], tok, max_new_tokens=20, batch_size=3,
                          device=torch.device("cpu"))[0]
    assert [g.tokens for g in again] == [g.tokens for g in gens[::-1]]  # independent of batch and order


def test_stop_strings_end_a_row_and_cut_its_text(one_thread):
    tok = _tok()
    model = build_llama("tiny-llama", tok, dtype=torch.float32, seed=1).eval()
    prompt = tok("the film is")["input_ids"]
    (full,) = generate_many(lambda s, **kw: model(**kw), 1, [prompt], tok, max_new_tokens=20, batch_size=1,
                            device=torch.device("cpu"))[0:1][0]
    stop = full.text[4:6]
    assert stop and stop in full.text
    (cut,) = generate_many(lambda s, **kw: model(**kw), 1, [prompt], tok, max_new_tokens=20, batch_size=1,
                           device=torch.device("cpu"), stop=[stop])[0]
    assert cut.ended == "stop" and cut.text == full.text[: full.text.index(stop)]
    assert len(cut.tokens) < len(full.tokens)


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_fused_generation_equals_each_model_alone(method, sft_dir, one_thread):
    cfgs = [validate(sft_config(sft_dir, method=method, lr=lr)) for lr in (1e-3, 3e-3)]
    ps = [prepare(c) for c in cfgs]
    share_frozen(ps[0].model, ps[1].model)
    for k, p in enumerate(ps):
        torch.manual_seed(k)
        p.model.eval()
        with torch.no_grad():
            for n, q in p.model.named_parameters():
                if "lora_B" in n:
                    q.normal_(0, 0.05)
    prompts = ps[0].task.sets[0].prompts
    kw = dict(max_new_tokens=16, batch_size=3, device=torch.device("cpu"))
    alone = [generate_many(lambda s, m=p.model, **a: m(**a), 1, prompts, p.tokenizer, **kw)[0] for p in ps]
    assert [g.tokens for g in alone[0]] != [g.tokens for g in alone[1]]  # the adapters differ
    fused = Fused([p.model for p in ps], get_method(method).fusion)
    with fused.routing():
        together = generate_many(lambda sizes, **a: fused.call(sizes, [0, 1], **a), 2, prompts, ps[0].tokenizer, **kw)
    for j in range(2):
        assert [g.tokens for g in together[j]] == [g.tokens for g in alone[j]]


def test_a_memorised_answer_is_generated_and_scored_correct(tmp_path, one_thread):
    """End to end: train on one question until memorised; its greedy answer scores 1, another question 0."""
    write_jsonl(tmp_path / "train.jsonl", [{"question": QUESTIONS[0], "answer": "Three plus four.\nThe answer is: 7"}] * 8)
    write_jsonl(tmp_path / "test.jsonl", [{"question": QUESTIONS[0], "answer": "#### 7"},
                                          {"question": QUESTIONS[1], "answer": "#### 8"}])
    cfg = validate(sft_config(tmp_path, lr=1e-2, steps=60, eval_every=60, rank=8, alpha=16, data={
        **sft_config(tmp_path)["data"], "max_new_tokens": 40}))
    r = run(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    assert r["status"] == "ok" and r["final"]["sets"] == {"gsm8k": 0.5} and r["final"]["accuracy"] == 0.5
    rows = [json.loads(x) for x in (tmp_path / "run" / "generations.jsonl").read_text().splitlines()]
    assert rows[0]["text"] == "Three plus four.\nThe answer is: 7\n" and rows[0]["ended"] == "eos"
    assert (rows[0]["answer"], rows[0]["gold"], rows[0]["correct"]) == ("7.0", "7.0", True)
    assert rows[1]["correct"] is False and rows[1]["id"].endswith("test.jsonl:2")
    assert r["counts"] == {"train_examples": 8, "train_skipped_empty": 0, "eval_examples": {"gsm8k": 2}, "train_without_loss": 0}
    assert r["generation_tokens_per_second"] > 0 and r["final"]["macro_f1"] is None


def test_sources_json_array_datasets_folder_first_n_and_seeded_sample(tmp_path):
    import datasets

    rows = [{"instruction": f"say {i}", "output": f"{i}"} for i in range(10)]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "ds"))
    write_jsonl(tmp_path / "test.jsonl", [{"instruction": "x", "output": "the answer is true"}])
    ev = [{"name": "boolq", "evaluator": "commonsense", "path": "test.jsonl"}]

    def pairs(train: dict) -> list:
        cfg = validate({"data": {"kind": "sft", "dir": str(tmp_path), "train": train, "eval": ev}})
        task = load_task(cfg)
        assert isinstance(task, Sft)
        return [out for _, _, out in task.pairs]

    assert pairs({"path": "a.json"}) == [str(i) for i in range(10)]
    assert pairs({"path": "ds"}) == [str(i) for i in range(10)]
    assert pairs({"path": "a.json", "n": 3}) == ["0", "1", "2"]
    sample = pairs({"path": "ds", "n": 4, "sample_seed": 1})
    assert len(sample) == 4 and sample == sorted(sample, key=int) and sample != ["0", "1", "2", "3"]
    assert sample == pairs({"path": "a.json", "n": 4, "sample_seed": 1})  # the same rows from either source
    with pytest.raises(DataError, match="hub:no/such-dataset"):
        pairs({"hub": "no/such-dataset"})


def test_templates_custom_and_chat(sft_dir):
    from lorabench.data.templates import PromptFormat

    tok = _tok()
    assert PromptFormat("Q: {instruction}\nA:", tok).render("hi") == "Q: hi\nA:"
    assert PromptFormat("Q: {instruction} [{input}]", tok).render("hi", "ctx") == "Q: hi [ctx]"
    with pytest.raises(ConfigError, match="no chat template"):
        PromptFormat("chat", tok)
    tok.chat_template = "{% for m in messages %}<|user|>{{ m['content'] }}{% endfor %}<|assistant|>"
    assert PromptFormat("chat", tok).render("hi") == "<|user|>hi<|assistant|>"


@pytest.mark.parametrize("mutate, message", [
    (lambda d: write_jsonl(d / "train.jsonl", [{"question": "q"}]), "train.jsonl:1: field 'answer' missing"),
    (lambda d: write_jsonl(d / "train.jsonl", [{"question": "q", "answer": " "}]), "train.jsonl:1: field 'answer' is empty"),
    (lambda d: (d / "train.jsonl").write_text('{"question": "q", "answer": "a"}\nnot json\n'),
     "train.jsonl:2: not a JSON line"),
    (lambda d: write_jsonl(d / "test.jsonl", [{"question": "q", "answer": "#### 1"}, {"question": "q", "answer": "none"}]),
     "test.jsonl:2: answer: no final number"),
])
def test_bad_data_is_one_line_exit_2_nothing_written(mutate, message, sft_dir, tmp_path):
    import yaml

    mutate(sft_dir)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(sft_config(sft_dir)))
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", str(cfg), "-o", str(out), "-q"])
    assert r.exit_code == 2 and message in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not out.exists()


@pytest.mark.parametrize("over, message", [
    ({"template": "Answer this."}, "data.template: must be 'alpaca', 'chat' or a string holding {instruction} once"),
    ({"eval": [{"name": "g", "evaluator": "gsm9k", "path": "test.jsonl"}]},
     "data.eval.0.evaluator: unknown evaluator 'gsm9k' (did you mean 'gsm8k'?)"),
    ({"eval": [{"name": "g", "evaluator": "gsm8k"}]}, "give exactly one of path"),
    ({"eval": [{"name": "mine", "evaluator": "commonsense", "path": "test.jsonl"}]}, "no answer vocabulary for set 'mine'"),
])
def test_bad_config_is_one_line_exit_2(over, message, sft_dir, tmp_path):
    import yaml

    raw = sft_config(sft_dir)
    raw["data"].update(over)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    r = runner.invoke(app, ["train", str(cfg), "-o", str(tmp_path / "run"), "-q"])
    assert r.exit_code == 2 and message in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "run").exists()


def test_hessian_of_an_sft_run_covers_response_tokens_only(sft_dir, tmp_path, one_thread):
    import yaml

    from lorabench.hessian import hessian_batches

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(sft_config(sft_dir, target_modules=["q_proj"], device="cpu")))
    out = tmp_path / "h.json"
    r = runner.invoke(app, ["hessian", str(cfg), "--samples", "6", "--layers", "0", "--modules", "q_proj", "-q",
                            "-o", str(out)])
    assert r.exit_code == 0, r.output
    h = json.loads(out.read_text())
    p = prepare(validate(sft_config(sft_dir, target_modules=["q_proj"], device="cpu")))
    batches = hessian_batches(p, 6, 32)
    response = sum(int(b["loss_mask"][:, 1:].sum()) for b in batches)
    all_tokens = sum(int(b["attention_mask"][:, 1:].sum()) for b in batches)
    assert h["loss_terms"] == response < all_tokens
    assert h["lambda_max"] > 0 and set(h["data_files"]) == {"train", "eval:gsm8k"}


@pytest.mark.slow
def test_shipped_tiny_math_sweep_runs_end_to_end_with_per_set_figures(tmp_path, monkeypatch):
    import csv

    from .conftest import require_data_root

    monkeypatch.setenv("LORABENCH_DATA_ROOT", str(require_data_root()))
    out = tmp_path / "sweep"
    r = runner.invoke(app, ["sweep", "configs/sweep-sft-math-tinyllama.yaml", "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    b = runner.invoke(app, ["best", str(out)])
    assert b.exit_code == 0 and "mean of sets" in b.output and "gsm8k" in b.output and "math500" in b.output
    rows = [line.split() for line in b.output.splitlines() if line.startswith(("lora ", "pissa "))]
    assert len(rows) == 2 and all(row[3] != "-" for row in rows)  # λ_max measured per method
    for run_dir in out.glob("trials/*"):
        gens = [json.loads(x) for x in (run_dir / "generations.jsonl").read_text().splitlines()]
        assert [g["set"] for g in gens].count("gsm8k") == 50 and [g["set"] for g in gens].count("math500") == 25
        res = json.loads((run_dir / "result.json").read_text())
        assert set(res["final"]["sets"]) == {"gsm8k", "math500"}
        assert res["final"]["accuracy"] == sum(res["final"]["sets"].values()) / 2
    rep = runner.invoke(app, ["report", str(out), "-o", str(out / "report")])
    assert rep.exit_code == 0, rep.output
    table = list(csv.DictReader((out / "report" / "tables" / "comparison.csv").open()))
    assert {t["method"] for t in table} == {"lora", "pissa"}
    assert all(0 <= float(t["gsm8k_mean"]) <= 1 and 0 <= float(t["math500_mean"]) <= 1 for t in table)
    html = (out / "report" / "report.html").read_text()
    assert "gsm8k (%)" in html and "math500 (%)" in html and "mean over sets (%)" in html


def test_every_shipped_config_resolves():
    """Run configs validate as run configs, sweep configs expand into trials (no data or model needed)."""
    from lorabench.config import load_config
    from lorabench.sweep.config import load_sweep

    configs = sorted(Path("configs").glob("*.yaml"))
    assert len(configs) >= 11
    for path in configs:
        if path.name.startswith("sweep-"):
            assert load_sweep(path).trials, path
        else:
            load_config(path)
    math = load_config("configs/sft-math-qwen3.yaml")
    assert isinstance(math.data, SftData)
    assert (math.rank, math.alpha, math.batch_size * math.grad_accum, math.warmup(), math.model.max_length) == \
        (128, 128, 64, 47, 512)
    assert [s.evaluator for s in math.data.eval] == ["gsm8k", "math"] and math.data.train.n == 100_000
    grid = sorted({t.config["lr"] for t in load_sweep("configs/sweep-sft-math-qwen3.yaml").trials})
    assert len(grid) == 12 and grid[0] == 1.1247e-5 and grid[5] == 2e-4 and grid[-1] == 6.3246e-3


def test_shipped_tiny_commonsense_config_trains_and_scores_seven_sets(tmp_path, monkeypatch, one_thread):
    from .conftest import require_data_root

    from lorabench.config import load_config

    monkeypatch.setenv("LORABENCH_DATA_ROOT", str(require_data_root()))
    r = run(load_config("configs/sft-commonsense-tinyllama.yaml"), tmp_path / "run", progress=False, log=lambda s: None)
    assert r["status"] == "ok" and len(r["final"]["sets"]) == 7
    assert r["counts"]["eval_examples"] == {name: 16 for name in r["final"]["sets"]}
    gens = [json.loads(x) for x in (tmp_path / "run" / "generations.jsonl").read_text().splitlines()]
    assert len(gens) == 7 * 16 and all(g["gold"] for g in gens)


def test_blank_training_rows_are_refused_naming_the_line_or_skipped_and_counted(monkeypatch):
    """The staged Code Alpaca sample has two rows without a response (lines 238 and 1,860)."""
    from lorabench.config import load_config
    from lorabench.errors import DataError
    from lorabench.tasks import load_task

    from .conftest import require_data_root

    monkeypatch.setenv("LORABENCH_DATA_ROOT", str(require_data_root()))
    with pytest.raises(DataError, match=r"code_alpaca_2k_train.jsonl:238: field 'output' is empty"):
        load_task(load_config("configs/sft-code-tinyllama.yaml", ["data.train.n=2000"]))
    task = load_task(load_config("configs/sft-code-tinyllama.yaml", ["data.train.n=2000", "data.train.skip_empty=true"]))
    assert (task.size, task.counts["train_skipped_empty"]) == (1998, 2)


def test_the_headline_interval_resamples_each_set_on_its_own():
    """Mean of two sets' accuracies: a constant set adds no spread, so the interval is half the other's."""
    from lorabench.evaluate import accuracy_interval

    half = [True] * 50 + [False] * 50
    lo, hi = accuracy_interval(half)
    lo2, hi2 = accuracy_interval(half, [True] * 10)
    assert lo < 0.5 < hi and lo2 < 0.75 < hi2
    assert (hi2 - lo2) == pytest.approx((hi - lo) / 2, rel=0.25)
    assert accuracy_interval([True] * 3, [False] * 3) == [0.5, 0.5]
