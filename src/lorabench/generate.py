"""Batched greedy decoding with a KV cache, for K models at once (a fused group, or one model when K = 1).

Prompts are sorted by length and cut into batches of ``batch_size``; each batch is left-padded (positions
count real tokens only, so a padded prompt sees the positions it would alone), repeated K times along the
batch axis, and decoded greedily: at each step every row takes the argmax of its next-token logits, the
prompt's keys and values cached. A row ends at EOS, at a stop string, or after ``max_new_tokens``; the rest go on.
The output depends only on the models and prompts, never on the batch it was decoded in (up to float rounding
of the padded matrix products, which greedy decoding turns into a different token only at near-ties).

``call(sizes, **model_kwargs)`` runs the K models on their rows of a stacked batch (``sizes`` rows each) and
returns the model output: a fused group's routed forward (:mod:`lorabench.fuse`), or one model's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache

ModelCall = Callable[..., Any]
TAIL_TOKENS = 8  # tokens decoded beyond the longest stop string when checking for one


@dataclass(frozen=True)
class Generation:
    tokens: list[int]  # the new tokens, up to (not including) EOS
    text: str  # their text, cut before the first stop string
    ended: str  # "eos", "stop" or "length"


@dataclass
class Throughput:
    new_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float | None:
        return self.new_tokens / self.seconds if self.seconds else None


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[row, width - len(p):] = 1
    return ids, mask


def _stopped(tokenizer: Any, row: list[int], stop: list[str]) -> bool:
    if not stop:
        return False
    tail = row[-(max(len(s) for s in stop) + TAIL_TOKENS):]
    text = tokenizer.decode(tail, skip_special_tokens=True)
    return any(s in text for s in stop)


@torch.no_grad()
def greedy(call: ModelCall, sizes: list[int], ids: torch.Tensor, mask: torch.Tensor, *, eos_id: int,
           max_new_tokens: int, stop: list[str], tokenizer: Any) -> list[list[int]]:
    """The new tokens of each row of a left-padded batch (EOS included where reached)."""
    rows: list[list[int]] = [[] for _ in range(ids.shape[0])]
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    pos = (mask.cumsum(dim=1) - 1).clamp(min=0)
    cache = DynamicCache()  # filled in place by each call
    out = call(sizes, input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True,
               logits_to_keep=1)
    for step in range(max_new_tokens):
        nxt = out.logits[:, -1].float().argmax(dim=-1)
        for r in (~done).nonzero().flatten().tolist():
            rows[r].append(int(nxt[r]))
            if rows[r][-1] == eos_id or _stopped(tokenizer, rows[r], stop):
                done[r] = True
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        pos = pos[:, -1:] + 1
        out = call(sizes, input_ids=nxt.unsqueeze(1), attention_mask=mask, position_ids=pos, cache=cache,
                   use_cache=True, logits_to_keep=1)
    return rows


def finish(tokens: list[int], tokenizer: Any, eos_id: int, stop: list[str]) -> Generation:
    """A row's tokens as a :class:`Generation`: EOS dropped, text cut before the first stop string."""
    ended = "length"
    if tokens and tokens[-1] == eos_id:
        tokens, ended = tokens[:-1], "eos"
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    cuts = [text.index(s) for s in stop if s in text]
    if cuts:
        text, ended = text[: min(cuts)], "stop"
    return Generation(tokens, text, ended)


def generate_many(call: ModelCall, k: int, prompts: list[list[int]], tokenizer: Any, *, max_new_tokens: int,
                  batch_size: int, device: torch.device, stop: list[str] | None = None, progress: bool = False,
                  desc: str = "generating", throughput: Throughput | None = None) -> list[list[Generation]]:
    """Greedy generations of K models for every prompt (token ids), in the prompts' order: ``out[j][i]`` is
    model j's answer to prompt i."""
    stop = list(stop or [])
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[list[Generation | None]] = [[None] * len(prompts) for _ in range(k)]
    bar = tqdm(total=len(prompts), desc=desc, unit="prompt", disable=not progress, dynamic_ncols=True, leave=False)
    t0 = time.perf_counter()
    try:
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            ids, mask = left_pad([prompts[i] for i in idx], pad)
            ids, mask = ids.repeat(k, 1).to(device), mask.repeat(k, 1).to(device)
            rows = greedy(call, [len(idx)] * k, ids, mask, eos_id=eos, max_new_tokens=max_new_tokens, stop=stop,
                          tokenizer=tokenizer)
            for j in range(k):
                for r, i in enumerate(idx):
                    out[j][i] = finish(rows[j * len(idx) + r], tokenizer, eos, stop)
            if throughput is not None:
                throughput.new_tokens += sum(len(r) for r in rows)
            bar.update(len(idx))
    finally:
        bar.close()
    if throughput is not None:
        throughput.seconds += time.perf_counter() - t0
    return [[g for g in gens if g is not None] for gens in out]
