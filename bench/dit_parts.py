"""Pieces of ``dit_step.py``: full-width ComfyUI blocks, stand-in blocks for the pack's hooks, and the
per-call reference the adapter's existing packs follow.

The stand-ins carry the module names the pack hooks (``img_attn.norm``/``img_attn.proj``, ``norm``/``linear2``,
``x_block.attn.qkv``/``proj``) but compute nothing, so running one with ``DitPatch`` hooks installed times
exactly what the adapter adds to a block call: capture, the image-prompt term, scaling and injection.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from types import ModuleType

import torch
import torch.nn.functional as F
from common import REPO_ROOT, init_parameters
from torch import nn

FIXTURES = "ipadapter_suite_bench_fixtures"


def fixture(name: str) -> ModuleType:
    """``tests/fixtures/<name>.py`` under another package name (ComfyUI has a ``tests`` package of its own)."""
    if FIXTURES not in sys.modules:
        root = REPO_ROOT / "tests" / "fixtures"
        spec = importlib.util.spec_from_file_location(FIXTURES, root / "__init__.py",
                                                      submodule_search_locations=[str(root)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[FIXTURES] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{FIXTURES}.{name}")


def adapter_kinds(pack) -> dict[str, object]:
    """The pack's own ModelKind for each published layout, detected from shape-only (meta) state dicts."""
    fx = fixture("dit_adapters")
    split, detect = pack.ipadapter_core.loading.split_adapter_sections, pack.ipadapter_core.kinds.detect_kind
    files = {"xlabs-v1": fx.xlabs_state_dict(device="meta", tokens=4),
             "xlabs-v2": fx.xlabs_state_dict(device="meta", tokens=16),
             "instantx-flux": fx.instantx_flux_state_dict(device="meta"),
             "instantx-sd3": fx.instantx_sd3_state_dict(device="meta")}
    kinds = {}
    for name, sd in files.items():
        weights = split(sd, f"{name}.bin")
        kinds[name] = detect(weights.image_proj, weights.ip_adapter, name)
    return kinds


# --------------------------------------------------------------------------------------------------
# Real ComfyUI blocks at full width
# --------------------------------------------------------------------------------------------------


def flux_pe(img_tokens: int, txt_tokens: int, batch: int, head_dim: int = 128) -> torch.Tensor:
    """Flux's RoPE table for text (ids 0) then a square image grid (ids (0, row, col)), as ``_forward`` builds."""
    import comfy.ldm.flux.layers as layers

    side = int(img_tokens**0.5)
    ids = torch.zeros(batch, txt_tokens + side * side, 3)
    grid = torch.zeros(side, side, 3)
    grid[..., 1] = torch.arange(side, dtype=torch.float32)[:, None]
    grid[..., 2] = torch.arange(side, dtype=torch.float32)[None, :]
    ids[:, txt_tokens:] = grid.reshape(1, -1, 3)
    axes = fixture("dit_models").flux_axes(head_dim)
    return layers.EmbedND(dim=head_dim, theta=10000, axes_dim=axes)(ids)


def flux_block(kind: str, hidden: int, heads: int, generator: torch.Generator) -> nn.Module:
    import comfy.ldm.flux.layers as layers
    import comfy.ops

    ops = comfy.ops.disable_weight_init
    if kind == "double":
        block = layers.DoubleStreamBlock(hidden, heads, 4.0, qkv_bias=True, operations=ops)
    else:
        block = layers.SingleStreamBlock(hidden, heads, 4.0, operations=ops)
    init_parameters(block, generator)
    return block.eval()


def sd3_block(hidden: int, heads: int, generator: torch.Generator) -> nn.Module:
    """One SD3.5-Large joint block (qk RMSNorm, no MMDiT-X self-attention), as MMDiT builds them."""
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.mmdit import JointBlock

    block = JointBlock(hidden, heads, mlp_ratio=4.0, qkv_bias=True, attn_mode="torch", pre_only=False,
                       rmsnorm=False, scale_mod_only=False, swiglu=False, qk_norm="rms", x_block_self_attn=False,
                       operations=comfy.ops.disable_weight_init)
    init_parameters(block, generator)
    return block.eval()


def block_call(kind: str, block: nn.Module, batch: int, img: int, txt: int, hidden: int,
               generator: torch.Generator) -> tuple[Callable[[], object], Callable[[], object]]:
    """(prepare, run): ``prepare`` makes fresh inputs (the blocks update some in place), ``run`` one forward."""
    image = torch.randn(batch, img, hidden, generator=generator)
    text = torch.randn(batch, txt, hidden, generator=generator)
    vec = torch.randn(batch, hidden, generator=generator)
    state: dict = {}
    if kind == "joint":
        def prepare():
            state["args"] = (text, image)

        def run():
            return block(*state["args"], c=vec, use_checkpoint=False)
        return prepare, run
    pe = flux_pe(img, txt, batch, hidden // block.num_heads)
    if kind == "double":
        def prepare():
            state["args"] = (image, text.clone())

        def run():
            return block(*state["args"], vec, pe)
        return prepare, run
    joined = torch.cat([text, image], dim=1)

    def prepare():
        state["args"] = (joined.clone(),)

    def run():
        return block(*state["args"], vec, pe)
    return prepare, run


# --------------------------------------------------------------------------------------------------
# Stand-ins: the hooked module names, no compute
# --------------------------------------------------------------------------------------------------


class _QK(nn.Module):
    """Where QKNorm sits: returns the (already normalised) q and k it is given."""

    def forward(self, q, k, v):
        return q, k


class _Pass(nn.Module):
    def forward(self, x):
        return x


class StandInDouble(nn.Module):
    """A Flux double block's hooked modules: ``forward(q, img, attn) -> (img, proj(attn))``."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.hidden_size, self.num_heads = hidden, heads
        self.img_attn = nn.Module()
        self.img_attn.norm, self.img_attn.proj = _QK(), _Pass()

    def forward(self, q, img, attn):
        self.img_attn.norm(q, q, q)
        return img, self.img_attn.proj(attn)


class StandInSingle(nn.Module):
    """A Flux single block's hooked modules: ``forward(q, linear2_input) -> linear2(linear2_input)``."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.hidden_size, self.num_heads = hidden, heads
        self.norm, self.linear2 = _QK(), _Pass()

    def forward(self, q, lin2_in):
        self.norm(q, q, q)
        return self.linear2(lin2_in)


class StandInJoint(nn.Module):
    """An MMDiT joint block's hooked modules: ``forward(qkv_out, attn) -> x_block.attn.proj(attn)``."""

    def __init__(self, heads: int) -> None:
        super().__init__()
        self.x_block = nn.Module()
        self.x_block.attn = nn.Module()
        self.x_block.attn.qkv, self.x_block.attn.proj = _Pass(), _Pass()
        self.x_block.attn.num_heads = heads

    def forward(self, qkv_out, attn):
        self.x_block.attn.qkv(qkv_out)
        return self.x_block.attn.proj(attn)


def stand_in_model(hidden: int, heads: int, double: int = 1, single: int = 1, joint: int = 0) -> nn.Module:
    dm = nn.Module()
    if joint:
        dm.joint_blocks = nn.ModuleList(StandInJoint(heads) for _ in range(joint))
    else:
        dm.double_blocks = nn.ModuleList(StandInDouble(hidden, heads) for _ in range(double))
        dm.single_blocks = nn.ModuleList(StandInSingle(hidden, heads) for _ in range(single))
    return dm


def hooked_call(pack, patch, dm: nn.Module, apps: list, call_args: tuple, block: nn.Module,
                prefill: Callable | None = None) -> Callable[..., object]:
    """``run(*block_inputs)``: DitPatch's hooks for one call installed on ``dm``, the block run, hooks removed
    (what ``DitPatch.__call__`` does around a model call, minus the model)."""
    hooks = pack.nodes.dit_hooks

    def run(*inputs):
        call = hooks._Call(*call_args)
        if prefill is not None:
            prefill(call)
        handles = patch._install(dm, apps, call)
        try:
            return block(*inputs)
        finally:
            for handle in handles:
                handle.remove()
    return run


# --------------------------------------------------------------------------------------------------
# The per-call reference (x-flux / IPAdapter-Flux / diffusers style)
# --------------------------------------------------------------------------------------------------


def heads_of(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, width = x.shape
    return x.view(b, n, heads, width // heads).transpose(1, 2)


def naive_flux(q: torch.Tensor, tokens: torch.Tensor, wk, bk, wv, bv, heads: int, k_norm: bool,
               target: torch.Tensor, weight: float) -> torch.Tensor:
    """K/V projected from the image tokens inside the block call, attention, ``target + w * term``."""
    k = heads_of(F.linear(tokens, wk, bk), heads)
    v = heads_of(F.linear(tokens, wv, bv), heads)
    if k_norm:
        k = F.rms_norm(k, (k.shape[-1],), eps=1e-5)
    out = F.scaled_dot_product_attention(q, k.expand(q.shape[0], -1, -1, -1), v.expand(q.shape[0], -1, -1, -1))
    return target + weight * out.transpose(1, 2).reshape(target.shape)


def naive_sd3(q, k, v, tokens: list[torch.Tensor], temb: list[torch.Tensor], w: dict[str, torch.Tensor],
              heads: int, target: torch.Tensor, weight: float) -> torch.Tensor:
    """The diffusers / SD3 pack computation of one joint block, cond and uncond rows in one batch."""
    tok, te = torch.cat(tokens), torch.cat(temb)
    shift, scale = F.linear(F.silu(te), w["norm_ip_linear_weight"], w["norm_ip_linear_bias"]).chunk(2, dim=-1)
    t = F.layer_norm(tok, tok.shape[-1:], eps=1e-6) * (1 + scale[:, None]) + shift[:, None]
    ip_k = F.rms_norm(heads_of(F.linear(t, w["to_k_ip_weight"]), heads), (q.shape[-1],), w["norm_ip_k_weight"], 1e-6)
    ip_v = heads_of(F.linear(t, w["to_v_ip_weight"]), heads)
    keys = torch.cat([F.rms_norm(k, (k.shape[-1],), w["norm_k_weight"], 1e-6), ip_k], dim=2)
    values = torch.cat([v, ip_v], dim=2)
    out = F.scaled_dot_product_attention(F.rms_norm(q, (q.shape[-1],), w["norm_q_weight"], 1e-6), keys, values)
    return target + weight * out.transpose(1, 2).reshape(target.shape)
