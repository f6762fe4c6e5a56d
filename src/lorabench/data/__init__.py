"""Tasks, prompt templates, loaders and batching."""

from .batching import collate, eval_batches, train_order
from .encode import Encoded, encode, encode_sft, without_loss
from .glue import Example, Split, label_counts, load_sst2, read_tsv, subset
from .prompts import Prompt, label_token_ids

__all__ = ["Encoded", "Example", "Prompt", "Split", "collate", "encode", "encode_sft", "eval_batches", "label_counts",
           "label_token_ids", "load_sst2", "read_tsv", "subset", "train_order", "without_loss"]
