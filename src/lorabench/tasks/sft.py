"""Supervised fine-tuning on instruction/response pairs, evaluated by generation (the study's protocol).

Training: each row's instruction (and input) is rendered with ``data.template``; the response gets ``"\\n"`` and
EOS appended, as in "Learning Rate Matters" (``run-lora/train.py``: target ``f"{output}\\n{eos}"``), and only
response tokens are loss targets (:func:`lorabench.data.encode_sft`). Evaluation: every set's prompts are
decoded greedily (:mod:`lorabench.generate`) and scored by the set's evaluator; a set's figure is its accuracy
and the task's headline figure their mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .. import data as D
from ..config import EvalSet, RunConfig, SftData
from ..data.rows import Rows, read_rows, text_field
from ..data.templates import PromptFormat
from ..errors import DataError
from ..evaluate import accuracy_interval
from ..evaluators import Evaluator, GoldError, get_evaluator
from ..generate import Generation, ModelCall, Throughput, generate_many
from ..records import Metrics
from .base import Evaluation


@dataclass
class EvalItems:
    spec: EvalSet
    evaluator: Evaluator
    rows: Rows
    texts: list[tuple[str, str]]  # each row's instruction and input
    golds: list[str]
    max_new_tokens: int
    prompts: list[list[int]] = field(default_factory=list)  # token ids, once tokenised


def _budget(spec: EvalSet, evaluator: Evaluator, cap: int | None) -> int:
    n = spec.max_new_tokens or evaluator.max_new_tokens
    return min(n, cap) if cap else n


def _eval_set(j: int, spec: EvalSet, data: SftData) -> EvalItems:
    """Evaluation set ``j``'s rows and gold answers (prompts are tokenised later)."""
    ev = get_evaluator(spec.evaluator, spec.name, spec.options, where=f"data.eval.{j}")
    rows = read_rows(spec, data.root())
    prompt_field, answer_field = spec.prompt_field or ev.prompt_field, spec.answer_field or ev.answer_field
    texts, golds = [], []
    for i in range(len(rows.rows)):
        extra = text_field(rows, i, spec.input_field, required=False) if spec.input_field else ""
        texts.append((text_field(rows, i, prompt_field), extra))
        try:
            golds.append(ev.gold(rows.rows[i], answer_field))
        except GoldError as e:
            raise DataError(f"{rows.where[i]}: {e} (evaluator {ev.name})") from None
    return EvalItems(spec, ev, rows, texts, golds, _budget(spec, ev, data.max_new_tokens))


class Sft:
    artefact = "generations.jsonl"
    held_out: tuple[str, ...] = ()  # the evaluation sets are the held-out data

    def __init__(self, cfg: RunConfig) -> None:
        assert isinstance(cfg.data, SftData)
        self.data, self.max_length = cfg.data, cfg.model.max_length
        src = self.data.train
        rows = read_rows(src, self.data.root())
        self.pairs, skipped = [], 0
        for i in range(len(rows.rows)):
            if src.skip_empty and not all(str(rows.rows[i].get(f) or "").strip() for f in (src.instruction, src.output)):
                skipped += 1
                continue
            extra = text_field(rows, i, src.input, required=False) if src.input else ""
            self.pairs.append((text_field(rows, i, src.instruction), extra, text_field(rows, i, src.output)))
        if not self.pairs:
            raise DataError(f"{rows.source}: no training rows left ({skipped} skipped as empty)")
        self.size = len(self.pairs)
        self.files = {"train": {"source": rows.source, "sha256": rows.sha256}}
        self.sets = [_eval_set(j, spec, self.data) for j, spec in enumerate(self.data.eval)]
        for s in self.sets:
            self.files[f"eval:{s.spec.name}"] = {"source": s.rows.source, "sha256": s.rows.sha256}
        self.counts: dict[str, Any] = {"train_examples": self.size, "train_skipped_empty": skipped,
                                       "eval_examples": {s.spec.name: len(s.golds) for s in self.sets}}

    def tokenize(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        fmt = PromptFormat(self.data.template, tokenizer)
        pairs = [(fmt.render(instr, extra), out + "\n") for instr, extra, out in self.pairs]
        self.train = D.encode_sft(pairs, tokenizer, max_length=self.max_length, special_tokens=fmt.special_tokens)
        self.counts["train_without_loss"] = D.without_loss(self.train)
        for s in self.sets:
            texts = [fmt.render(instr, extra) for instr, extra in s.texts]
            s.prompts = [list(map(int, p)) for p in tokenizer(texts, add_special_tokens=fmt.special_tokens)["input_ids"]]

    def describe(self) -> list[str]:
        c = self.counts
        skipped = f", {c['train_skipped_empty']} blank rows skipped" if c["train_skipped_empty"] else ""
        lines = [f"train: {c['train_examples']} examples{skipped}, {c['train_without_loss']} without loss tokens "
                 f"(prompt at least max_length)"]
        lines += [f"eval {s.spec.name}: {len(s.prompts)} prompts, {s.evaluator.name} scoring, at most "
                  f"{s.max_new_tokens} new tokens" for s in self.sets]
        return lines

    def evaluate(self, call: ModelCall, k: int, *, batch_size: int, device: torch.device, autocast: bool,
                 progress: bool, split: str = "validation") -> list[Evaluation]:
        accs: list[dict[str, float]] = [{} for _ in range(k)]
        details: list[dict[str, dict[str, float]]] = [{} for _ in range(k)]
        rows: list[list[dict[str, Any]]] = [[] for _ in range(k)]
        speed = Throughput()
        per_run = max(1, batch_size // k)  # K fused runs decode eval_batch_size rows in all: the KV cache grows with rows
        for s in self.sets:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                gens = generate_many(call, k, s.prompts, self.tokenizer, max_new_tokens=s.max_new_tokens,
                                     batch_size=per_run, device=device, stop=self.data.stop, progress=progress,
                                     desc=f"generating {s.spec.name}", throughput=speed)
            for j in range(k):
                scored = self._score(s, gens[j])
                accs[j][s.spec.name], more = s.evaluator.figures(scored)
                if more:
                    details[j][s.spec.name] = more
                rows[j] += scored
        n = sum(len(s.prompts) for s in self.sets)
        out = []
        for a, d, r in zip(accs, details, rows):
            m = Metrics(accuracy=sum(a.values()) / len(a), macro_f1=None, sets=a)
            if all(s.evaluator.figure_is_share for s in self.sets):
                m["accuracy_ci"] = accuracy_interval(*[[bool(x["correct"]) for x in r if x["set"] == s.spec.name]
                                                       for s in self.sets])
            if d:
                m["details"] = d
            out.append(Evaluation(m, r, n, extra={"new_tokens": speed.new_tokens,
                                                  "generation_seconds": speed.seconds}))
        return out

    @staticmethod
    def _score(s: EvalItems, gens: list[Generation]) -> list[dict[str, Any]]:
        answers = [s.evaluator.extract(g.text) for g in gens]
        judged = s.evaluator.judge_all(answers, s.golds)
        return [{"set": s.spec.name, "index": i, "id": s.rows.where[i], "text": g.text, "answer": answer,
                 "gold": gold, **j, "ended": g.ended, "new_tokens": len(g.tokens)}
                for i, (g, answer, gold, j) in enumerate(zip(gens, answers, s.golds, judged, strict=True))]
