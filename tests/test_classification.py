"""Your own classification data: CSV with text labels in 3 classes, JSON lines with other field names, an NLI-style
pair task; both heads train on each, a sweep runs and its report states the right baseline."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lorabench import load_config, run
from lorabench.cli import app
from lorabench.errors import ConfigError, DataError

runner = CliRunner()
CUES = {"bad": ["awful", "boring", "dull"], "good": ["fun", "charming", "moving"], "great": ["brilliant", "wonderful"]}
FILL = ["the", "film", "story", "is", "a", "very", "plot", "and", "with", "this"]


def sentences(n: int, seed: int, classes: list[str]) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        y = classes[0] if i % 2 == 0 else rng.choice(classes)  # the first class is the majority
        words = rng.sample(FILL, 4) + [rng.choice(CUES[y])]
        rng.shuffle(words)
        out.append((" ".join(words) + (", really" if i % 5 == 0 else ""), y))  # commas: CSV quoting is exercised
    return out


@pytest.fixture(scope="module")
def three_class_csv(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("csv3")
    for name, n, seed in (("train.csv", 120, 1), ("valid.csv", 40, 2), ("test.csv", 30, 3)):
        with (folder / name).open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "text", "sentiment"])
            w.writerows([i, s, y] for i, (s, y) in enumerate(sentences(n, seed, ["bad", "good", "great"])))
    return folder


@pytest.fixture(scope="module")
def jsonl_other_fields(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("jsonl")
    for name, n, seed in (("tr.jsonl", 80, 1), ("va.jsonl", 24, 2)):
        rows = [{"review": s, "stars": ["bad", "good", "great"].index(y)}
                for s, y in sentences(n, seed, ["bad", "good", "great"])]
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture(scope="module")
def nli_pairs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("nli")
    rng = random.Random(0)
    for name, n in (("train.jsonl", 80), ("dev.jsonl", 24)):
        rows = []
        for _ in range(n):
            a, b = rng.choice(sorted(CUES)), rng.choice(sorted(CUES))
            rows.append({"premise": f"the film is {rng.choice(CUES[a])}", "hypothesis": f"this story is {rng.choice(CUES[b])}",
                         "label": "entailment" if a == b else "contradiction"})
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def csv_sets(folder: Path) -> list[str]:
    return [f"data.dir={folder}", "data.train={path: train.csv}", "data.validation={path: valid.csv}",
            "data.test={path: test.csv}", "data.text=text", "data.label=sentiment", "data.n_train=null",
            "data.template='Review: {text}\nVerdict: {label}\n'"]


def jsonl_sets(folder: Path) -> list[str]:
    return [f"data.dir={folder}", "data.train={path: tr.jsonl}", "data.validation={path: va.jsonl}",
            "data.text=review", "data.label=stars", "data.labels=[0, 1, 2]", "data.label_words=[bad, good, great]",
            "data.n_train=null", "data.template='Review: {review}\nVerdict: {label}\n'"]


def nli_sets(folder: Path) -> list[str]:
    return [f"data.dir={folder}", "data.train={path: train.jsonl}", "data.validation={path: dev.jsonl}",
            "data.text=[premise, hypothesis]", "data.labels=[contradiction, entailment]",
            "data.label_words=[bad, good]", "data.n_train=null",
            "data.template='Premise: {premise}\nHypothesis: {hypothesis}\nSame: {label}\n'"]


def head_sets(head: str, tiny_bert_dir: Path) -> list[str]:
    return ["model.name=tiny-llama"] if head == "lm" else [f"model.name={tiny_bert_dir}", "model.head=cls"]


@pytest.mark.parametrize("head", ["lm", "cls"])
@pytest.mark.parametrize("task", ["csv", "jsonl", "nli"])
def test_own_data_trains_with_both_heads(task, head, three_class_csv, jsonl_other_fields, nli_pairs, tiny_bert_dir,
                                         tmp_path, one_thread):
    sets = {"csv": csv_sets(three_class_csv), "jsonl": jsonl_sets(jsonl_other_fields), "nli": nli_sets(nli_pairs)}[task]
    cfg = load_config(None, [*head_sets(head, tiny_bert_dir), *sets, "model.max_length=48", "steps=6", "eval_every=6",
                             "batch_size=8", "lr=5e-3", "device=cpu", "save_adapter=false"])
    r = run(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    assert r["status"] == "ok", r["error"]
    classes = {"csv": ["bad", "good", "great"], "jsonl": ["bad", "good", "great"],
               "nli": ["bad", "good"]}[task]  # label_words name the classes, for either head
    assert r["counts"]["classes"] == classes
    counts = r["counts"]["label_counts"]["validation"]
    assert len(counts) == len(classes) and sum(counts.values()) == {"csv": 40, "jsonl": 24, "nli": 24}[task]
    preds = [json.loads(x) for x in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert all(set(p["scores"]) == set(classes) for p in preds)
    assert r["majority"] == max(counts.values()) / sum(counts.values())
    if task == "csv":  # a held-out test split, evaluated once
        assert len((tmp_path / "run" / "predictions.test.jsonl").read_text().splitlines()) == 30
        assert 0 <= r["held_out"]["test"]["accuracy"] <= 1


@pytest.mark.parametrize("sets, message", [
    (["data.labels=[bad, good]"], "train.csv:9: field 'sentiment': 'great' is not one of the classes ['bad', 'good']"),
    (["data.label=stars"], "train.csv:2: field 'stars' missing (the row has id, sentiment, text)"),
    (["data.label_words=[bad, good]"], "data.label_words: 2 words for 3 classes ['bad', 'good', 'great']"),
    (["data.template='Review: {sentence}\nVerdict: {label}\n'"], "data.template: must contain {text} exactly once"),
    (["data.validation={path: nothere.csv}"], "nothere.csv: file not found"),
])
def test_mismatches_are_one_line_naming_file_line_field(sets, message, three_class_csv, tmp_path):
    from lorabench.prepare import prepare

    cfg = load_config(None, ["model.name=tiny-llama", *csv_sets(three_class_csv), *sets, "device=cpu"])
    with pytest.raises((ConfigError, DataError)) as e:
        prepare(cfg)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["csv", "jsonl", "nli"])
def test_own_data_sweeps_and_reports(task, three_class_csv, jsonl_other_fields, nli_pairs, tiny_bert_dir, tmp_path,
                                     trials_in_process):
    sets = {"csv": csv_sets(three_class_csv), "jsonl": jsonl_sets(jsonl_other_fields), "nli": nli_sets(nli_pairs)}[task]
    base = load_config(None, [*(head_sets("cls", tiny_bert_dir) if task == "nli" else ["model.name=tiny-llama"]),
                              *sets,
                              "model.max_length=48", "steps=4", "eval_every=4", "batch_size=8", "device=cpu",
                              "save_adapter=false"]).dump()
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump({"base": base, "space": {"methods": ["lora", "pissa"], "lr": [1e-3, 5e-3]}}))
    r = runner.invoke(app, ["sweep", str(p), "-o", str(tmp_path / "S"), "-q", "--no-costs"])
    assert r.exit_code == 0, r.output
    if task == "csv":  # the cost pass was skipped: best says so instead of showing fused shares as costs
        assert "lora, pissa: not measured alone yet" in runner.invoke(app, ["best", str(tmp_path / "S")]).output
    rep = runner.invoke(app, ["report", str(tmp_path / "S")])
    assert rep.exit_code == 0, rep.output
    table = list(csv.DictReader((tmp_path / "S" / "report" / "tables" / "comparison.csv").open()))
    folder, name, field = {"csv": (three_class_csv, "valid.csv", "sentiment"),
                           "jsonl": (jsonl_other_fields, "va.jsonl", "stars"), "nli": (nli_pairs, "dev.jsonl", "label")}[task]
    labels = ([r[field] for r in csv.DictReader((folder / name).open())] if task == "csv"
              else [json.loads(x)[field] for x in (folder / name).read_text().splitlines()])
    (row,) = [t for t in table if t["method"] == "majority class"]
    assert float(row["accuracy_mean"]) == pytest.approx(max(map(labels.count, set(labels))) / len(labels))
    assert {t["method"] for t in table} == {"lora", "pissa", "majority class"}
    assert all(t["p_vs_ref"] for t in table if t["method"] == "pissa")  # paired test against LoRA
    if task == "csv":
        assert all(t["test_mean"] for t in table if t["method"] != "majority class")


def test_parquet_and_datasets_folder_read_like_csv(three_class_csv, tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lorabench.config import Source
    from lorabench.data.rows import read_rows

    rows = read_rows(Source(path="train.csv"), three_class_csv).rows
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train.parquet")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "train_ds"))
    assert read_rows(Source(path="train.parquet"), tmp_path).rows == rows
    assert read_rows(Source(path="train_ds"), tmp_path).rows == rows
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="bad.parquet: not a readable Parquet file"):
        read_rows(Source(path="bad.parquet"), tmp_path)
