"""`lorabench eval RUN_DIR --harness`: lm-evaluation-harness, offline, on a tiny-Llama adapter. The harness's
log-likelihoods and generations are those of the adapted model (recomputed here by hand), not of the base."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from typer.testing import CliRunner

from lorabench import load_config, run
from lorabench.cli import app
from lorabench.harness_tasks import LOCAL, parse_choice_row, task_config

from .conftest import require_data_root
from .helpers import base_model

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = require_data_root()
    out = tmp_path_factory.mktemp("harness") / "run"
    cfg = load_config("configs/sft-math-tinyllama.yaml", [f"data.dir={root}", "steps=4", "lr=2e-2", "device=cpu",
                                                          "data.max_new_tokens=4"])
    cfg.data.eval = cfg.data.eval[:1]
    cfg.data.eval[0].n = 2
    assert run(cfg, out, progress=False, log=lambda s: None)["status"] == "ok"
    return out


def loglik(model, tok, context: str, continuation: str) -> float:
    """Σ log p(continuation | context), tokenised as the harness does: the pair encoded whole, then split, with
    the tokenizer's own special tokens (this tokenizer's BOS)."""
    whole = tok(context + continuation)["input_ids"]
    ctx = tok(context)["input_ids"]
    ids = torch.tensor([whole])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    return float(sum(logp[i - 1, whole[i]] for i in range(len(ctx), len(whole))))


def test_harness_runs_a_loglikelihood_and_a_generation_task_on_the_adapter(trained):
    res = runner.invoke(app, ["eval", str(trained), "--harness", "arc_easy,gsm8k", "--limit", "3",
                              "--num-fewshot", "0", "--batch-size", "2"])
    assert res.exit_code == 0, res.output
    record = json.loads((trained / "harness" / "results.json").read_text())
    assert set(record["results"]) == {"arc_easy", "gsm8k"} and record["files_sha256"]["arc_easy"]["test"]
    from lorabench.models import build_tokenizer

    tok = build_tokenizer()
    adapted = PeftModel.from_pretrained(base_model(), str(trained / "adapter")).eval()
    plain = base_model().eval()
    samples = [json.loads(x) for x in (trained / "harness" / "samples_arc_easy.jsonl").read_text().splitlines()]
    assert len(samples) == 3
    hits, moved = [], 0.0
    for s in samples:
        got = [r[0][0] for r in s["resps"]]
        want = [loglik(adapted, tok, ctx, cont) for ctx, cont in s["arguments"]]
        base = [loglik(plain, tok, ctx, cont) for ctx, cont in s["arguments"]]
        assert got == pytest.approx(want, abs=1e-3)
        moved = max(moved, max(abs(a - b) for a, b in zip(want, base)))
        hits.append(int(max(range(len(want)), key=want.__getitem__) == s["target"]))
    assert moved > 0.1  # the adapter changed the model the harness scored
    assert record["results"]["arc_easy"]["acc,none"] == pytest.approx(sum(hits) / 3)
    gens = [json.loads(x) for x in (trained / "harness" / "samples_gsm8k.jsonl").read_text().splitlines()]
    gens = [g for g in gens if g["filter"] == "strict-match"]  # one row per document and answer filter
    assert len(gens) == 3
    for g in gens:
        prompt = g["arguments"][0][0]
        assert prompt.startswith("Question: ") and prompt.endswith("\nAnswer:")
        # the model's context (512) − max_gen_toks (256), kept from the right as the harness truncates
        ids = tok(prompt, return_tensors="pt")["input_ids"][:, -(512 - 256):]
        with torch.no_grad():
            out = adapted.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                   max_new_tokens=256, pad_token_id=tok.pad_token_id)
        text = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        for stop in ("Question:", "</s>", "<|im_end|>"):
            text = text.split(stop)[0]
        assert g["resps"][0][0] == text  # the harness's greedy continuation is the adapted model's
    assert "gsm8k" in res.output and "acc,none" in res.output


def test_bad_harness_input_is_one_line(trained, tmp_path):
    res = runner.invoke(app, ["eval", str(trained), "--harness", "arc_eazy"])
    assert res.exit_code == 2 and "did you mean 'arc_easy'" in res.output
    res = runner.invoke(app, ["eval", str(trained), "--harness", "gsm8k", "--data-root", str(tmp_path)])
    assert res.exit_code == 2 and "gsm8k_test.jsonl not found" in res.output
    res = runner.invoke(app, ["eval", str(tmp_path), "--harness", "gsm8k"])
    assert res.exit_code == 2 and "no adapter/ here" in res.output


def test_every_staged_commonsense_file_parses_into_question_and_choices():
    root = require_data_root()
    sizes = {}
    for name in LOCAL:
        conf = task_config(name, root)
        rows = [json.loads(x) for x in open(conf["dataset_kwargs"]["data_files"]["test"], encoding="utf-8")]
        if name in {"gsm8k", "boolq"}:
            continue
        parsed = [parse_choice_row(r) for r in rows]
        sizes[name] = {len(p["choices"]) for p in parsed}
        assert all(0 <= p["label"] < len(p["choices"]) and p["question"] for p in parsed), name
    assert sizes == {"arc_easy": {3, 4, 5}, "arc_challenge": {3, 4, 5}, "openbookqa": {4}, "piqa": {2},
                     "social_iqa": {3}, "winogrande": {2}}
