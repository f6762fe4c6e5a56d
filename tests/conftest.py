"""Shared fixtures: synthetic GLUE data and tiny models built locally (no downloads, no real data)."""

from __future__ import annotations

import os
import random
from pathlib import Path

# The hubs are unreachable in tests: offline mode makes a hub source fail at once instead of after ~25 s of
# retries. Set before anything imports huggingface_hub, which reads it once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

from lorabench.tiny_llama import build_llama, build_tokenizer  # noqa: E402

POS = ["great", "wonderful", "brilliant", "charming", "beautiful", "enjoyable", "moving", "fun"]
NEG = ["awful", "boring", "terrible", "dull", "stupid", "ugly", "disappointing", "mess"]
FILL = ["the", "film", "movie", "story", "is", "a", "very", "acting", "plot", "and", "with", "this"]

REAL_DATA = Path(os.environ.get("LORABENCH_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared/data/sst2")
DATA_ROOT = Path(os.environ.get("LORABENCH_DATA_ROOT") or Path(__file__).resolve().parents[2] / "shared/data")


def synthetic_rows(n: int, seed: int, varied: bool = False) -> list[tuple[str, int]]:
    """Sentences whose label is given by one sentiment word among filler words (4 of them, or 0 to 11 if
    ``varied``, so that batches of different examples have different widths)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        y = rng.randint(0, 1)
        words = rng.sample(FILL, rng.randint(0, len(FILL) - 1) if varied else 4) + [rng.choice(POS if y else NEG)]
        rng.shuffle(words)
        rows.append((" ".join(words), y))
    return rows


def write_glue(folder: Path, n_train: int = 400, n_dev: int = 64, varied: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train.tsv", n_train, 1), ("dev.tsv", n_dev, 2)):
        body = "".join(f"{s}\t{y}\n" for s, y in synthetic_rows(n, seed, varied))
        (folder / name).write_text("sentence\tlabel\n" + body, encoding="utf-8")
    return folder


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LORABENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def run_trials_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sweeps run their tasks in this process: the real worker code (claim, run, record) without a fresh
    interpreter per task, for tests whose subject is not the worker processes (test_sweep covers those)."""
    from lorabench.sweep import runner as sweep_runner
    from lorabench.sweep.worker import run_trials

    monkeypatch.setattr(sweep_runner, "run_local",
                        lambda url, folder, tasks, workers, threads=None: [run_trials(url, folder, t) for t in tasks])


@pytest.fixture
def trials_in_process(monkeypatch):
    run_trials_here(monkeypatch)


@pytest.fixture
def one_thread():
    """Tiny models: one torch thread is faster than two (and far faster on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def glue_dir(tmp_path_factory) -> Path:
    return write_glue(tmp_path_factory.mktemp("glue"))


@pytest.fixture(scope="session")
def varied_glue_dir(tmp_path_factory) -> Path:
    """Like ``glue_dir``, with sentences of 1 to 12 words."""
    return write_glue(tmp_path_factory.mktemp("glue-varied"), varied=True)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A small random BERT classifier saved as a local model folder (safetensors + tokenizer)."""
    from transformers import BertConfig, BertForSequenceClassification

    tok = build_tokenizer()
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, num_labels=2,
                     pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-bert")
    BertForSequenceClassification(cfg).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_llama():
    tok = build_tokenizer()
    return build_llama("tiny-llama", tok, dtype=torch.float32, seed=0), tok


def require_real_data() -> Path:
    if not (REAL_DATA / "train.tsv").is_file():
        pytest.skip(f"real SST-2 files not found at {REAL_DATA} (set LORABENCH_DATA_DIR)")
    return REAL_DATA


def require_data_root() -> Path:
    """The shared data folder (math/, commonsense/ …), or a skip saying where it was looked for."""
    if not (DATA_ROOT / "math" / "gsm8k_test.jsonl").is_file():
        pytest.skip(f"shared evaluation data not found at {DATA_ROOT} (set LORABENCH_DATA_ROOT)")
    return DATA_ROOT
