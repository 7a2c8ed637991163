"""SigLIP's attention-pooling ("MAP") head, which InstantX Flux needs and ComfyUI never runs.

ComfyUI's SigLIP encoder gives the post-layernormed tokens but drops ``vision_model.head.*`` when it
loads a file (dit-adapters.md §4.7), so the pack reads those few tensors itself, straight from the
encoder file (or from a small ``<stem>.head.safetensors`` made by ``python -m ipadapter_cli siglip-head``),
and pools: a learned probe attends over the tokens, then ``x + MLP(LayerNorm(x))``, token 0.

The ``CLIP_VISION`` object does not remember its file, so ``matches_encoder`` tells the host which file
a loaded encoder came from by comparing a few small tensors (``encoder_fingerprint``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from ..errors import IPAdapterError

HEAD_PREFIX = "vision_model.head."
HEAD_NAMES = (
    "probe",
    "attention.in_proj_weight",
    "attention.in_proj_bias",
    "attention.out_proj.weight",
    "attention.out_proj.bias",
    "layernorm.weight",
    "layernorm.bias",
    "mlp.fc1.weight",
    "mlp.fc1.bias",
    "mlp.fc2.weight",
    "mlp.fc2.bias",
)
# Small encoder tensors that identify a SigLIP checkpoint; key names as in the HF file and in ComfyUI's
# ``clip_vision.model.state_dict()`` (both use the transformers layout).
FINGERPRINT_KEYS = (
    "vision_model.post_layernorm.weight",
    "vision_model.post_layernorm.bias",
    "vision_model.embeddings.patch_embedding.bias",
)
# The head's attention uses the encoder's head count, which no tensor records: the published SigLIP
# vision towers (base 768/12, large 1024/16, so400m 1152/16, giant 1536/16). Other widths need ``heads=``.
HEADS_BY_WIDTH = {768: 12, 1024: 16, 1152: 16, 1536: 16}
LAYER_NORM_EPS = 1e-6  # SigLIP's config value (not torch's default 1e-5)

# A 16-bit copy of a checkpoint (fp16/bf16 rehost, or an encoder ComfyUI loaded in half precision) must still
# match its fp32 original: agree to bf16 rounding (2^-8 relative), a far finer grain than two trainings differ by.
_MATCH_RTOL, _MATCH_ATOL = 2.0**-7, 1e-5


class SiglipPoolingHead(nn.Module):
    """last_hidden_state [B, L, width] (after post_layernorm) -> pooled [B, width], as SigLIP's ``pooler_output``."""

    def __init__(self, width: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.probe = nn.Parameter(torch.randn(1, 1, width))
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.layernorm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(width, mlp)
        self.mlp.fc2 = nn.Linear(mlp, width)

    def forward(self, last_hidden_state: torch.Tensor) -> torch.Tensor:
        hidden = last_hidden_state.to(self.probe.dtype)
        probe = self.probe.expand(hidden.shape[0], -1, -1)
        x = self.attention(probe, hidden, hidden, need_weights=False)[0]
        y = self.mlp.fc1(self.layernorm(x))
        x = x + self.mlp.fc2(nn.functional.gelu(y, approximate="tanh"))  # SigLIP's gelu_pytorch_tanh
        return x[:, 0]


def head_keys(keys: Iterable[str]) -> list[str]:
    """The keys of ``keys`` that belong to the pooling head (full names, prefix included)."""
    return [k for k in keys if k.startswith(HEAD_PREFIX)]


def heads_for_width(width: int) -> int:
    """The attention head count of the published SigLIP model of this width (see ``HEADS_BY_WIDTH``)."""
    if width not in HEADS_BY_WIDTH:
        raise IPAdapterError(
            f"The SigLIP pooling head is {width} wide; its attention head count is only known for the published "
            "SigLIP models.",
            expected=f"a head {', '.join(map(str, HEADS_BY_WIDTH))} wide (so400m-patch14-384: 1152)",
            fix="use google/siglip-so400m-patch14-384, the encoder InstantX FLUX.1-dev-IP-Adapter was trained with",
        )
    return HEADS_BY_WIDTH[width]


def read_head_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor] | None:
    """Only the ``vision_model.head.*`` tensors of a .safetensors file (full names), or None.

    None when the file has no head or cannot be read at all (not safetensors, truncated, missing): callers
    scan whole model folders and a broken neighbour must not stop them.
    """
    try:
        from safetensors import safe_open

        with safe_open(os.fspath(path), framework="pt", device="cpu") as f:
            keys = head_keys(f.keys())
            return {k: f.get_tensor(k) for k in keys} or None
    except Exception:  # any unreadable file simply has no usable head
        return None


def _strip(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix(HEAD_PREFIX): t for k, t in tensors.items()}


def _expected_shapes(width: int, mlp: int) -> dict[str, tuple[int, ...]]:
    return {
        "probe": (1, 1, width),
        "attention.in_proj_weight": (3 * width, width),
        "attention.in_proj_bias": (3 * width,),
        "attention.out_proj.weight": (width, width),
        "attention.out_proj.bias": (width,),
        "layernorm.weight": (width,),
        "layernorm.bias": (width,),
        "mlp.fc1.weight": (mlp, width),
        "mlp.fc1.bias": (mlp,),
        "mlp.fc2.weight": (width, mlp),
        "mlp.fc2.bias": (width,),
    }


def check_head(tensors: Mapping[str, torch.Tensor], source: str = "the SigLIP file") -> tuple[int, int]:
    """(width, mlp) of a complete, consistent head, keyed with or without ``vision_model.head.``.

    Raises IPAdapterError naming ``source`` and the missing or mis-shaped tensors.
    """
    sd = _strip(tensors)
    missing = [n for n in HEAD_NAMES if n not in sd]
    fix = ("use the full SigLIP model.safetensors (google/siglip-so400m-patch14-384), or extract its head with "
           "`python -m ipadapter_cli siglip-head model.safetensors` and put the .head.safetensors file beside "
           "your SigLIP file in models/clip_vision")
    if missing:
        raise IPAdapterError(
            f"{source} has an incomplete SigLIP pooling head: {', '.join(HEAD_PREFIX + n for n in missing)} missing.",
            expected=f"all of {len(HEAD_NAMES)} {HEAD_PREFIX}* tensors", fix=fix,
        )
    width, mlp = sd["probe"].shape[-1], sd["mlp.fc1.weight"].shape[0]
    wrong = [f"{HEAD_PREFIX}{n} {tuple(sd[n].shape)} (expected {shape})"
             for n, shape in _expected_shapes(width, mlp).items() if tuple(sd[n].shape) != shape]
    if wrong:
        raise IPAdapterError(
            f"{source} has a SigLIP pooling head with mismatched shapes: {'; '.join(wrong)}.",
            expected=f"one consistent head (width {width} from the probe, MLP {mlp} from mlp.fc1)", fix=fix,
        )
    return width, mlp


def build_head(tensors: Mapping[str, torch.Tensor], heads: int | None = None,
               source: str = "the SigLIP file") -> SiglipPoolingHead:
    """A ready head (eval mode, the tensors' dtype and device) from its tensors (see ``check_head``).

    ``heads`` defaults to ``heads_for_width`` (16 for so400m).
    """
    width, mlp = check_head(tensors, source)
    heads = heads or heads_for_width(width)
    if width % heads:
        raise IPAdapterError(f"A {width}-wide SigLIP head cannot be split into {heads} attention heads.",
                             expected="a head count that divides the width")
    sd = _strip(tensors)
    probe = sd["probe"]
    head = SiglipPoolingHead(width, heads, mlp).to(device=probe.device, dtype=probe.dtype)
    head.load_state_dict({n: sd[n] for n in HEAD_NAMES}, strict=True)
    return head.eval().requires_grad_(False)


def encoder_fingerprint(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``FINGERPRINT_KEYS`` tensors of a loaded encoder (e.g. ``clip_vision.model.state_dict()``), on the CPU."""
    return {k: state_dict[k].detach().to("cpu") for k in FINGERPRINT_KEYS if k in state_dict}


def matches_encoder(path: str | os.PathLike, reference: Mapping[str, torch.Tensor]) -> bool:
    """Whether the .safetensors file at ``path`` holds the same ``reference`` tensors (up to 16-bit rounding).

    ``reference`` is small (``encoder_fingerprint``); False for an empty reference, a missing key, a shape
    difference or an unreadable file. Head files written by the CLI carry the fingerprint too.
    """
    if not reference:
        return False
    try:
        from safetensors import safe_open

        with safe_open(os.fspath(path), framework="pt", device="cpu") as f:
            names = set(f.keys())
            if any(k not in names for k in reference):
                return False
            for key, ref in reference.items():
                got = f.get_tensor(key)
                if got.shape != ref.shape or not torch.allclose(
                    got.float(), ref.detach().to("cpu").float(), rtol=_MATCH_RTOL, atol=_MATCH_ATOL
                ):
                    return False
            return True
    except Exception:  # an unreadable file is not the encoder's file
        return False
