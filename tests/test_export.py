"""Adapters you can ship: a run's adapter reloads with plain PEFT onto the original base, and `lorabench export`
writes it or the merged model."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from lorabench import load_config, run
from lorabench.cli import app
from lorabench.export import portable_base

from .helpers import base_model

runner = CliRunner()


def test_portable_base_names_a_hub_id_not_a_local_path():
    assert portable_base("minilm") == "sentence-transformers/all-MiniLM-L6-v2"
    assert portable_base("Qwen/Qwen3-0.6B-Base") == "Qwen/Qwen3-0.6B-Base"
    assert portable_base("tiny-llama") == "lorabench:tiny-llama"


@pytest.mark.parametrize("method", ["lora", "pissa"])
def test_export_adapter_and_merged_model_reproduce_the_trained_model(method, glue_dir, tmp_path, one_thread):
    cfg = load_config("configs/tiny-llama.yaml", [f"data.dir={glue_dir}", "data.n_train=64", "data.n_eval=16",
                                                  "steps=4", "eval_every=4", "batch_size=4", f"method={method}",
                                                  "lr=1e-2", "device=cpu"])
    r = run(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    assert r["status"] == "ok"
    x = torch.randint(5, 200, (2, 9))
    with torch.no_grad():
        want = PeftModel.from_pretrained(base_model(), str(tmp_path / "run" / "adapter"))(input_ids=x).logits
    res = runner.invoke(app, ["export", str(tmp_path / "run"), "-o", str(tmp_path / "merged"), "--merged"])
    assert res.exit_code == 0, res.output
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=x).logits, want, atol=1e-4, rtol=1e-4)
    assert not any("lora" in n for n, _ in merged.named_parameters())  # plain weights, servable as is
    res = runner.invoke(app, ["export", str(tmp_path / "run"), "-o", str(tmp_path / "adapter")])
    assert res.exit_code == 0 and (tmp_path / "adapter" / "README.md").is_file()
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["r"] == (16 if method == "pissa" else 8)
    again = runner.invoke(app, ["export", str(tmp_path / "run"), "-o", str(tmp_path / "adapter")])
    assert again.exit_code == 2 and "exists and is not empty" in again.output
    missing = runner.invoke(app, ["export", str(tmp_path / "merged"), "-o", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "no adapter/ here" in missing.output
