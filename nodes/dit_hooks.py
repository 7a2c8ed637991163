"""Host glue for transformer IP-Adapters (Flux, SD3.5): one keyed model wrapper and scoped hooks.

Nothing here replaces a ``forward`` or a block. ``DitPatch`` is registered as an ``APPLY_MODEL``
wrapper on a cloned model; for the length of one model call it puts PyTorch hooks on the
sub-modules the adapters need (names pinned by checkpoint keys, dit-adapters.md §4.9) and removes
them in ``finally``, whatever happens. So another pack's block replacement, skip-layer guidance or
a cache keeps working around us, the shared diffusion model carries nothing between calls, and
the block's own code (whatever a newer ComfyUI puts in it) still runs.

* capture: the block's query after its QK norm (Flux: the ``QKNorm`` module's output), or the raw
  image q/k/v (SD3.5: ``x_block.attn.qkv``'s output);
* inject: XLabs adds after the double block; InstantX before ``img_attn.proj`` / in the attention
  half of ``linear2``'s input; SD3.5 before ``x_block.attn.proj``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from ..ipadapter_core.attention import fit_rows as expand_rows
from ..ipadapter_core.dit.application import DitApplication, Target, TransformerLayout
from ..ipadapter_core.dit.attention import prompt_attention_heads, sd3_prompt_attention, sd3_prompt_kv

log = logging.getLogger("ipadapter_suite")
WRAPPER_KEY = "ipadapter_suite"


def layout_of(diffusion_model: torch.nn.Module) -> TransformerLayout | None:
    """Flux-style (double + single blocks) or MMDiT (joint blocks) layout, read from the modules."""
    double, single = getattr(diffusion_model, "double_blocks", None), getattr(diffusion_model, "single_blocks", None)
    if double is not None and single is not None and len(double) and hasattr(double[0], "img_attn"):
        return TransformerLayout("flux", int(double[0].hidden_size), int(double[0].num_heads), len(double), len(single))
    joint = getattr(diffusion_model, "joint_blocks", None)
    if joint is not None and len(joint) and hasattr(joint[0], "x_block"):
        attn = joint[0].x_block.attn
        return TransformerLayout("mmdit", int(attn.qkv.weight.shape[1]), int(attn.num_heads), len(joint))
    return None


class _Call:
    """Scratch state of one model call: batch layout, captured queries, which sites got their terms."""

    def __init__(self, x: torch.Tensor, chunks: list[int], context: torch.Tensor | None, timestep: float) -> None:
        self.rows = x.shape[0]
        self.chunks = chunks if chunks and self.rows % len(chunks) == 0 else [0]
        self.per_chunk = self.rows // len(self.chunks)
        self.grid = ((x.shape[-2] + 1) // 2, (x.shape[-1] + 1) // 2)  # both families patchify 2x2
        self.txt_len = int(context.shape[1]) if context is not None and context.dim() == 3 else 0
        self.timestep = timestep
        self.captured: dict[tuple, tuple[torch.Tensor, ...]] = {}
        self.applied: set[tuple] = set()
        self.sd3_tokens: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.masks: dict[tuple, torch.Tensor | None] = {}

    def chunk_rows(self, c: int) -> slice:
        return slice(c * self.per_chunk, (c + 1) * self.per_chunk)


def _row_mask(app: DitApplication, call: _Call, length: int, lead: int, rows: int, ref) -> torch.Tensor | None:
    """[rows, length, 1] factors for a term over ``lead`` text rows then the image rows (None: no mask).

    Text rows keep the term (the reference adds it to them unmasked); the main image grid gets the
    mask; rows after it (Kontext reference latents) get none, since the mask places the prompt in
    the output image. Built once per call and layout."""
    key = (id(app), length, lead, rows, ref.device, ref.dtype)
    if key in call.masks:
        return call.masks[key]
    m = app.token_mask(call.grid, ref.device, ref.dtype)
    main = call.grid[0] * call.grid[1]
    if m is not None and lead + main <= length:
        parts = [torch.ones(rows, lead, 1, device=ref.device, dtype=ref.dtype)] if lead else []
        parts.append(expand_rows(m, rows))
        if length > lead + main:
            parts.append(torch.zeros(rows, length - lead - main, 1, device=ref.device, dtype=ref.dtype))
        m = torch.cat(parts, dim=1)
    else:
        m = None
    call.masks[key] = m
    return m


def _scale_(app: DitApplication, target: Target, call: _Call, term: torch.Tensor, lead: int,
            heads: bool) -> torch.Tensor:
    """Weight, per-frame weights and mask of one chunk's term, in place: ``term`` is [rows, H, L, D]
    (``heads``) or [rows, L, C], a fresh attention output."""
    term.mul_(target.weight)
    rows, length = term.shape[0], term.shape[2 if heads else 1]
    if app.frame_weights is not None:
        term.mul_(expand_rows(app.frame_weights.to(term), rows).reshape(-1, 1, 1, *([1] if heads else [])))
    mask = _row_mask(app, call, length, lead, rows, term)
    if mask is not None:
        term.mul_(mask.unsqueeze(1) if heads else mask)
    return term


def _add_flux(app: DitApplication, target: Target, call: _Call, q: torch.Tensor, x: torch.Tensor,
              lead: int) -> None:
    """Add the prompt attention of each chunk into its rows of ``x`` [B, L, H*D] (no merged copy)."""
    xv = x.unflatten(-1, (q.shape[1], q.shape[3]))  # [B, L, H, D] view
    for c, flag in enumerate(call.chunks):
        k, v = app.state.get(target.entry, negative=flag == 1)
        rows = call.chunk_rows(c)
        out = _scale_(app, target, call, prompt_attention_heads(q[rows], k, v), lead, heads=True)
        xv[rows].add_(out.transpose(1, 2))


def _add_sd3(app: DitApplication, target: Target, call: _Call, qkv: tuple[torch.Tensor, ...],
             x: torch.Tensor) -> None:
    q, k, v = qkv
    weights = app.state.block(target.entry)
    for c, flag in enumerate(call.chunks):
        key = (id(app), flag)
        if key not in call.sd3_tokens:  # once per call and branch: the tokens depend only on the timestep
            call.sd3_tokens[key] = app.state.tokens(flag == 1, call.timestep, q.device, q.dtype)
        tokens, temb = call.sd3_tokens[key]
        ip_k, ip_v = sd3_prompt_kv(tokens, temb, (weights["norm_ip_linear_weight"].to(q), weights[
            "norm_ip_linear_bias"].to(q)), weights["to_k_ip_weight"].to(q), weights["to_v_ip_weight"].to(q),
            weights["norm_ip_k_weight"].to(q), app.heads)
        rows = call.chunk_rows(c)
        term = sd3_prompt_attention(q[rows], k[rows], v[rows], ip_k, ip_v, weights["norm_q_weight"],
                                    weights["norm_k_weight"])
        x[rows].add_(_scale_(app, target, call, term, 0, heads=False))


def _writable(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself when adding into it in place is safe (no autograd; an inference tensor only inside
    inference mode), else a copy. The hooked tensors are fresh ones the block made for this call."""
    if not torch.is_grad_enabled() and (torch.is_inference_mode_enabled() or not x.is_inference()):
        return x
    return x.clone()


class DitPatch:
    """The APPLY_MODEL wrapper holding every transformer adapter applied to one model (immutable:
    stacking makes a new one, so a cloned model never changes its parent's)."""

    def __init__(self, applications: tuple[DitApplication, ...]) -> None:
        self.applications = applications
        self._warned: set[tuple] = set()

    def stacked(self, application: DitApplication) -> DitPatch:
        return DitPatch(self.applications + (application,))

    def __call__(self, executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None,
                 **kwargs):
        options = transformer_options if transformer_options is not None else {}
        sigmas = options.get("sigmas", t)
        sigma = float(sigmas.reshape(-1).max()) if isinstance(sigmas, torch.Tensor) else float(sigmas)
        active = [a for a in self.applications if a.active(sigma)]
        base = getattr(executor, "class_obj", None)
        dm = getattr(base, "diffusion_model", None)
        if not active or dm is None:
            return executor(x, t, c_concat, c_crossattn, control, options, **kwargs)
        timestep = sigma
        sampling = getattr(base, "model_sampling", None)
        if sampling is not None and isinstance(t, torch.Tensor):
            timestep = float(sampling.timestep(t.reshape(-1)[:1].float()).reshape(-1)[0])
        call = _Call(x, list(options.get("cond_or_uncond") or [0]), c_crossattn, timestep)
        handles: list = []
        try:  # the hooks exist only inside this try, also when installing them fails half-way
            self._install(dm, active, call, handles)
            out = executor(x, t, c_concat, c_crossattn, control, options, **kwargs)
        finally:
            for handle in handles:
                handle.remove()
        self._report(active, call)
        return out

    # --- hooks ------------------------------------------------------------------------------------------------

    def _install(self, dm: torch.nn.Module, active: list[DitApplication], call: _Call,
                 handles: list | None = None) -> list:
        """Register the capture and inject hooks of every acting block, appending each handle to ``handles``
        (a new list if not given) as soon as it exists; returns that list."""
        handles = [] if handles is None else handles
        sites: dict[tuple, list[tuple[DitApplication, Target]]] = {}
        for app in active:
            for target in app.targets:
                sites.setdefault((target.stream, target.index), []).append((app, target))
        for site, users in sites.items():
            stream, index = site
            if stream == "joint":
                attn = dm.joint_blocks[index].x_block.attn
                handles.append(attn.qkv.register_forward_hook(self._capture_sd3(site, call, attn)))
                handles.append(attn.proj.register_forward_pre_hook(self._inject_input(site, call, users, 0)))
                continue
            block = (dm.double_blocks if stream == "double" else dm.single_blocks)[index]
            norm = block.img_attn.norm if stream == "double" else block.norm
            handles.append(norm.register_forward_hook(self._capture_q(site, call)))
            post = [u for u in users if u[0].kind.kind == "xlabs_flux"]
            pre = [u for u in users if u[0].kind.kind != "xlabs_flux"]
            if post:  # XLabs: added to the block's image output, after its MLP
                handles.append(block.register_forward_hook(self._inject_block_output(site, call, post)))
            if pre and stream == "double":  # InstantX: into the attention output, before img_attn.proj
                handles.append(block.img_attn.proj.register_forward_pre_hook(self._inject_input(site, call, pre, 0)))
            elif pre:  # InstantX single block: the attention half of linear2's input (text rows too)
                handles.append(block.linear2.register_forward_pre_hook(
                    self._inject_input(site, call, pre, call.txt_len, width=int(block.hidden_size))))
        return handles

    @staticmethod
    def _capture_q(site: tuple, call: _Call) -> Callable:
        def hook(module, args, output):
            call.captured[site] = (output[0],)
        return hook

    @staticmethod
    def _capture_sd3(site: tuple, call: _Call, attn: torch.nn.Module) -> Callable:
        def hook(module, args, output):
            b, length, _ = output.shape
            q, k, v = output.reshape(b, length, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
            call.captured[site] = (q, k, v)
        return hook

    @staticmethod
    def _add_terms(site: tuple, call: _Call, users: list, x: torch.Tensor, lead: int,
                   copy: bool = True) -> torch.Tensor | None:
        """``x`` (or a copy, see ``_writable``) with every user's term added; None when the site's query was
        not captured. ``copy=False``: ``x`` is already writable (a view into a tensor made writable)."""
        captured = call.captured.get(site)
        if captured is None:
            return None
        x = _writable(x) if copy else x
        for app, target in users:
            if site[0] == "joint":
                _add_sd3(app, target, call, captured, x)
            else:
                _add_flux(app, target, call, captured[0], x, lead)
        call.applied.add(site)
        return x

    def _inject_input(self, site: tuple, call: _Call, users: list, lead: int, width: int | None = None) -> Callable:
        def hook(module, args):
            x = args[0]
            if width is None:
                x = self._add_terms(site, call, users, x, lead)
            else:  # linear2's input: the attention half first, the MLP half after it
                target = _writable(x)
                if self._add_terms(site, call, users, target[..., :width], lead, copy=False) is None:
                    return None
                x = target
            return None if x is None else (x, *args[1:])
        return hook

    def _inject_block_output(self, site: tuple, call: _Call, users: list) -> Callable:
        def hook(module, args, output):
            img, *rest = output
            img = self._add_terms(site, call, users, img, 0)
            return None if img is None else (img, *rest)
        return hook

    def _report(self, active: list[DitApplication], call: _Call) -> None:
        """Warn once per adapter and block that a targeted block never ran its hooked modules."""
        for app in active:
            missed = [t for t in app.targets if (t.stream, t.index) not in call.applied]
            key = (id(app), tuple((t.stream, t.index) for t in missed))
            if not missed or key in self._warned:
                continue
            self._warned.add(key)
            names = ", ".join(f"{t.stream} {t.index}" for t in missed[:8]) + ("…" if len(missed) > 8 else "")
            log.warning(
                "IPAdapter (%s): the image prompt did not act in %d block(s) (%s) during a model call: those blocks "
                "were skipped (e.g. skip-layer guidance, a block cache) or replaced by another node that does not run "
                "the original block.", app.label, len(missed), names)
