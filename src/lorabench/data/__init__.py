"""Data: rows from files or the hub, labelled examples, prompt templates, tokenisation and batching."""

from .batching import collate, eval_batches, train_order
from .encode import Encoded, encode, encode_sft, without_loss
from .labelled import Example, classes_of, examples_of, label_counts, stratified, subset
from .prompts import Prompt, label_token_ids

__all__ = ["Encoded", "Example", "Prompt", "classes_of", "collate", "encode", "encode_sft", "eval_batches",
           "examples_of", "label_counts", "label_token_ids", "stratified", "subset", "train_order", "without_loss"]
