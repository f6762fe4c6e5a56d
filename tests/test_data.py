from pathlib import Path

import pytest
import torch

from lorabench.config import Source
from lorabench.data import Example, Prompt, classes_of, examples_of, label_token_ids, subset, train_order
from lorabench.data.rows import read_rows
from lorabench.errors import ConfigError, DataError, ModelError
from lorabench.tiny_llama import build_tokenizer

from .conftest import write_glue


def _write(tmp_path: Path, body: bytes) -> Path:
    p = tmp_path / "train.tsv"
    p.write_bytes(body)
    return p


def read_tsv(path: Path) -> list[Example]:
    rows = read_rows(Source(path=str(path)), path.parent)
    return examples_of(rows, ["sentence"], "label", classes_of(rows, "label", [0, 1]))


def test_reads_rows_and_hash(tmp_path):
    path = _write(tmp_path, b"sentence\tlabel\na fine film\t1\na dull one\t0\n")
    assert read_tsv(path) == [Example(("a fine film",), 1), Example(("a dull one",), 0)]
    assert len(read_rows(Source(path=str(path)), tmp_path).sha256) == 64


@pytest.mark.parametrize("body, expected", [
    (b"text\tlabel\nx\t1\n", ":2: field 'sentence' missing (the row has label, text)"),
    (b"sentence\tlabel\nfine\t1\nbad\t2\n", ":3: field 'label': '2' is not one of the classes ['0', '1']"),
    (b"sentence\tlabel\nfine\t1\n \t0\n", ":3: field 'sentence' is empty"),
    (b"sentence\tlabel\nfine\t1\nno tab here\n", ":3: expected 2 tab-separated columns, found 1"),
    (b"sentence\tlabel\nfine\t1\nbad \xff byte\t0\n", ":3: invalid UTF-8"),
    (b"sentence\tlabel\tlabel\nfine\t1\t1\n", ":1: column 'label' appears 2 times in the header"),
])
def test_bad_rows_name_file_and_line(tmp_path, body, expected):
    path = _write(tmp_path, body)
    with pytest.raises(DataError) as e:
        read_tsv(path)
    assert str(e.value).startswith(str(path)) and expected in str(e.value)


def test_subset_is_fixed_by_seed_only():
    ex = [Example((str(i),), i % 2) for i in range(1000)]
    a, b, c = subset(ex, 100, 0), subset(ex, 100, 0), subset(ex, 100, 1)
    assert a == b and a != c and len(set(e.texts for e in a)) == 100


def test_train_order_depends_on_seed_not_on_anything_else():
    first = lambda seed: [next(o) for o in [train_order(50, 10, seed)] for _ in range(7)]  # noqa: E731
    a, b = first(3), first(3)
    assert a == b and first(4) != a
    # one epoch covers each example exactly once
    assert sorted(sum(a[:5], [])) == list(range(50))


def test_length_grouping_cuts_padding_and_keeps_epochs_whole():
    rng = torch.Generator().manual_seed(0)
    lengths = torch.randint(2, 60, (2000,), generator=rng).tolist()
    epoch = lambda seed, lens: [next(o) for o in [train_order(2000, 16, seed, lens)] for _ in range(125)]  # noqa: E731

    def padding(batches):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches) / sum(lengths)

    grouped, plain = epoch(0, lengths), epoch(0, None)
    assert sorted(sum(grouped, [])) == list(range(2000)) and grouped == epoch(0, lengths) != epoch(1, lengths)
    assert padding(grouped) < 0.05 < 0.5 < padding(plain)
    assert {len(set(sum(grouped[:k], []))) for k in (1, 10)} == {16, 160}
    # batch order is shuffled, not longest first
    firsts = [max(lengths[i] for i in b) for b in grouped[:20]]
    assert firsts != sorted(firsts, reverse=True)


def test_prompt_and_label_tokens():
    tok = build_tokenizer()
    p = Prompt("Classify the sentiment of this sentence: {sentence}\n\n.Sentiment: {label}\n",
               ("negative", "positive"))
    assert p.query(("so {fun}",)) == "Classify the sentiment of this sentence: so {fun}\n\n.Sentiment:"
    ids = label_token_ids(tok, p)
    assert [tok.decode([i]).strip() for i in ids] == ["negative", "positive"]


def test_multi_token_label_word_fails_clearly():
    p = Prompt("Review: {sentence}\nVerdict: {label}\n", ("negative", "xqzjvwk"))
    with pytest.raises(ModelError, match="'xqzjvwk' is not a single token"):
        label_token_ids(build_tokenizer(), p)


def test_template_needs_both_fields():
    with pytest.raises(ConfigError, match=r"\{label\}"):
        Prompt("Review: {sentence}", ("negative", "positive"))


@pytest.mark.parametrize("head", ["lm", "cls"])
def test_a_single_very_long_word_is_truncated_to_max_length(head, tmp_path, tiny_bert_dir):
    """Every example respects max_length, even one unbroken 200,000-character word; the lm label survives."""
    from lorabench import load_config
    from lorabench.prepare import prepare

    folder = write_glue(tmp_path / "long", n_train=40, n_dev=8)
    rows = (folder / "train.tsv").read_text().splitlines()
    rows.insert(1, "x" * 200_000 + "\t1")
    (folder / "train.tsv").write_text("\n".join(rows) + "\n")
    model = ["model.name=tiny-llama"] if head == "lm" else [f"model.name={tiny_bert_dir}", "model.head=cls"]
    cfg = load_config(None, [*model, "model.max_length=40", f"data.dir={folder}", "data.n_train=null",
                             "data.n_eval=8", "device=cpu"])
    p = prepare(cfg)
    lengths = [len(x) for x in p.train.input_ids]
    assert max(lengths) <= 40 and len(lengths) == 41
    if head == "lm":
        long = max(range(len(lengths)), key=lengths.__getitem__)
        assert p.tokenizer.decode(p.train.input_ids[long]).rstrip().endswith("positive")
