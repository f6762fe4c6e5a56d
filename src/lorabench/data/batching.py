"""Batches: a seeded, method-independent order of training examples, and right-padded tensors.

The order depends only on (number of examples, batch size, seed, and the examples' token lengths when
grouping), never on the method, so every method sees the same examples in the same order at a given seed.

Length grouping (as in the samplers of common trainers): each epoch's permutation is cut into groups of
``GROUP`` batches; each group is sorted by length and cut into batches, and the epoch's batches are
shuffled. A batch then holds examples of similar length, so little of it is padding, while which
examples share an epoch, and the order of batches, stay random.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .encode import Encoded


GROUP = 64  # batches per length group


def train_order(n: int, batch_size: int, seed: int, lengths: list[int] | None = None) -> Iterator[list[int]]:
    """Endless batches of example indices: a fresh permutation per epoch, incomplete tail dropped.

    With ``lengths`` (one per example), batches are length-grouped (see the module's docstring).
    """
    if batch_size > n:
        raise ValueError(f"batch_size {batch_size} exceeds the {n} training examples")
    if lengths is not None and len(lengths) != n:
        raise ValueError(f"{len(lengths)} lengths for {n} examples")
    gen = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(n, generator=gen).tolist()[: n - n % batch_size]
        if lengths is None:
            yield from (perm[i : i + batch_size] for i in range(0, len(perm), batch_size))
            continue
        batches = []
        for g in range(0, len(perm), batch_size * GROUP):
            group = sorted(perm[g : g + batch_size * GROUP], key=lambda i: -lengths[i])
            batches += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
        yield from (batches[i] for i in torch.randperm(len(batches), generator=gen).tolist())


def collate(enc: Encoded, idx: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and class ``labels`` for examples ``idx``; with
    ``enc.loss_start``, a ``loss_mask`` too: 1 on the response tokens (the loss targets), 0 on prompt and padding."""
    seqs = [enc.input_ids[i] for i in idx]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[row, : len(s)] = 1
    out = {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([enc.labels[i] for i in idx])}
    if enc.loss_start is not None:
        starts = torch.tensor([enc.loss_start[i] for i in idx]).unsqueeze(1)
        out["loss_mask"] = mask * (torch.arange(width).unsqueeze(0) >= starts)
    return out


def eval_batches(enc: Encoded, batch_size: int, pad_id: int) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """Evaluation batches in length order (less padding); yields the example indices with each batch."""
    order = sorted(range(len(enc)), key=lambda i: len(enc.input_ids[i]))
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        yield idx, collate(enc, idx, pad_id)
