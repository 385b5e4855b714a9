"""The Workbench: a hooked model (TransformerBridge), its tokenizer and its FFN views.

Hook names are TransformerLens' stable API; :func:`ffnmem.core.hooks.hook_name` maps the short
kinds used across ffnmem (``post``, ``pre``, ``out``, ``resid_pre`` …) onto them.
"""

from __future__ import annotations

import hashlib
import platform
import re
import sys
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ffnmem.core.errors import BadInput
from ffnmem.core.ffn import FFNView


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``; anything else is one error line."""
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise BadInput(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BadInput(f"device {device!r} was asked for but no CUDA GPU is visible; use --device cpu")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise BadInput(f"device {device!r} does not exist: {torch.cuda.device_count()} CUDA GPU(s) visible "
                       f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    return dev


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
             "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if dtype not in table:
        raise BadInput(f"unknown dtype {dtype!r}; choose from float32, bfloat16, float16")
    return table[dtype]


def tensor_hash(state: dict[str, Tensor]) -> str:
    """SHA-256 over a state dict's names and bytes (deterministic; aliases of one storage hashed once)."""
    h = hashlib.sha256()
    seen: set[tuple[int, int]] = set()
    for name in sorted(state, key=lambda n: (len(n), n)):
        key = (state[name].data_ptr(), state[name].numel())
        if key in seen:
            continue
        seen.add(key)
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("ffnmem", "torch", "transformer-lens", "transformers", "numpy", "scikit-learn"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


@dataclass(eq=False)
class Workbench:
    """A loaded model ready for analysis. Build it with :func:`ffnmem.load_model`.

    Attributes: ``bridge`` (TransformerBridge), ``tokenizer`` (a Hugging Face tokenizer),
    ``model_id``, ``source`` (where the weights came from), ``weight_hash``.
    """

    bridge: Any
    tokenizer: Any
    model_id: str
    source: str
    weight_hash: str
    native_config: dict | None = None
    byte_tokenizer: bool = False
    _ffns: dict[int, FFNView] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return (f"Workbench({self.model_id!r}, layers={self.n_layers}, d_model={self.d_model}, "
                f"d_mlp={self.d_mlp}, device={self.device}, source={self.source!r})")

    # --- shape ---------------------------------------------------------------------------------
    @property
    def cfg(self):
        return self.bridge.cfg

    @property
    def n_layers(self) -> int:
        return int(self.cfg.n_layers)

    @property
    def d_model(self) -> int:
        return int(self.cfg.d_model)

    @property
    def d_mlp(self) -> int:
        return int(self.cfg.d_mlp)

    @property
    def d_vocab(self) -> int:
        return int(self.cfg.d_vocab)

    @property
    def n_ctx(self) -> int:
        return int(self.cfg.n_ctx)

    @property
    def device(self) -> torch.device:
        return next(self.bridge.original_model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.bridge.original_model.parameters()).dtype

    def n_params(self) -> int:
        return sum(p.numel() for p in self.bridge.original_model.parameters())

    # --- FFN views -----------------------------------------------------------------------------
    def check_layer(self, layer: int) -> int:
        if not isinstance(layer, int) or not -self.n_layers <= layer < self.n_layers:
            raise BadInput(f"layer {layer} is out of range: {self.model_id} has layers 0..{self.n_layers - 1}")
        return layer % self.n_layers

    def ffn(self, layer: int) -> FFNView:
        """The key-value view of FFN ``layer`` (negative indices count from the top)."""
        layer = self.check_layer(layer)
        if layer not in self._ffns:
            self._ffns[layer] = FFNView.from_bridge(self.bridge, layer)
        return self._ffns[layer]

    def ffns(self) -> list[FFNView]:
        return [self.ffn(layer) for layer in range(self.n_layers)]

    def check_hook(self, name: str) -> str:
        if name not in self.bridge.hook_dict:
            raise BadInput(f"unknown hook {name!r}; hooks look like 'blocks.0.mlp.hook_post' "
                           f"(layers 0..{self.n_layers - 1})")
        return name

    # --- unembedding ---------------------------------------------------------------------------
    @property
    def W_U(self) -> Float[Tensor, "d_model d_vocab"]:
        return self.bridge.W_U

    def final_norm_weight(self) -> Float[Tensor, " d_model"]:
        w = getattr(self.bridge.ln_final, "weight", None)
        return torch.ones(self.d_model, device=self.device, dtype=self.dtype) if w is None else w

    def final_norm_centers(self) -> bool:
        """True for LayerNorm (subtracts the mean), False for RMSNorm."""
        return str(getattr(self.cfg, "normalization_type", "LN")).upper().startswith("LN")

    # --- tokens --------------------------------------------------------------------------------
    def encode(self, text: str, *, prepend_bos: bool = True) -> list[int]:
        """Token ids of ``text`` (no special tokens but an optional leading BOS)."""
        if not isinstance(text, str) or not text:
            raise BadInput("empty input: give at least one character of text")
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        bos = self.tokenizer.bos_token_id
        return ([bos] if prepend_bos and bos is not None else []) + list(ids)

    def to_tokens(self, text: str | list[str], *, prepend_bos: bool = True) -> Int[Tensor, "batch pos"]:
        """Tokenise one prompt or several of the same token length, checking the context length."""
        texts = [text] if isinstance(text, str) else list(text)
        if not texts:
            raise BadInput("empty input: give at least one prompt")
        rows = [self.encode(t, prepend_bos=prepend_bos) for t in texts]
        for t, r in zip(texts, rows):
            self.check_length(len(r), what=f"prompt {t[:40]!r}")
        if len({len(r) for r in rows}) > 1:
            raise BadInput("prompts have different token lengths; pass them one at a time or pad them")
        return torch.tensor(rows, dtype=torch.long, device=self.device)

    def check_length(self, n_tokens: int, *, what: str = "input") -> None:
        if n_tokens > self.n_ctx:
            raise BadInput(f"{what} has {n_tokens} tokens but {self.model_id} reads at most "
                           f"{self.n_ctx}; shorten it or use a shorter window")

    def answer_token(self, answer: str) -> int:
        """The single token id of ``answer`` as it follows a prompt (keep its leading space)."""
        ids = self.encode(answer, prepend_bos=False)
        if len(ids) != 1:
            pieces = [self.tokenizer.decode([i]) for i in ids]
            raise BadInput(f"answer {answer!r} is {len(ids)} tokens {pieces}, not one; "
                           "use a one-token answer or full-sequence scoring")
        return ids[0]

    def decode(self, ids) -> str:
        return self.tokenizer.decode(ids if isinstance(ids, list) else [int(ids)])

    def str_tokens(self, ids) -> list[str]:
        return [self.tokenizer.decode([int(i)]) for i in ids]

    # --- provenance ----------------------------------------------------------------------------
    def provenance(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "model_source": self.source,
            "weight_hash": self.weight_hash,
            "weight_processing": "none (raw weights; hooks report the original model's activations)",
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "versions": package_versions(),
            "argv": sys.argv[:1],
        }
