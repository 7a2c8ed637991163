"""Checks shared by the transformer (Flux, SD3.5) kinds: per-block entries and how a file claims a family.

A UNet adapter numbers its K/V by diffusers' attention-processor order, where cross-attention
(attn2) sites are the odd ones (1, 3, 5, ...), and its K/V have no bias. Transformer adapters number
every block from 0, and some carry biases or AdaLN weights. Those facts, not file names or the
widths of one published release, decide which detector owns a file; a file a family claims but that
does not hold together raises ``LayoutMismatch`` so it is reported, never passed on to an SD detector.
"""

from __future__ import annotations

import re

import torch

_ENTRY = re.compile(r"^(\d+)\.(.+)$")
_LORA = re.compile(r"_lora\.")


class LayoutMismatch(Exception):
    """A file has a family's fingerprint but not that family's consistent layout."""

    def __init__(self, family: str, problem: str, expected: str) -> None:
        super().__init__(problem)
        self.family, self.problem, self.expected = family, problem, expected


def entries(ip_adapter: dict[str, torch.Tensor]) -> tuple[dict[int, dict[str, tuple[int, ...]]], list[str]]:
    """``{index: {name: shape}}`` of the ``"{index}.{name}"`` keys, and the keys that are not numbered."""
    out: dict[int, dict[str, tuple[int, ...]]] = {}
    loose: list[str] = []
    for key, value in ip_adapter.items():
        m = _ENTRY.match(key)
        if m is None or not isinstance(value, torch.Tensor):
            loose.append(key)
            continue
        out.setdefault(int(m.group(1)), {})[m.group(2)] = tuple(value.shape)
    return out, loose


def has_lora(ip_adapter: dict[str, torch.Tensor]) -> bool:
    return any(_LORA.search(k) for k in ip_adapter)


def is_transformer_layout(ip_adapter: dict[str, torch.Tensor]) -> bool:
    """True if the K/V section cannot belong to a UNet adapter: an even-numbered K/V entry (0 included),
    a K/V bias or an AdaLN ``norm_ip``."""
    numbered, _ = entries(ip_adapter)
    for index, names in numbered.items():
        kv = [n for n in names if n.startswith(("to_k_ip.", "to_v_ip."))]
        if any(n.endswith(".bias") for n in kv) or any(n.startswith("norm_ip.") for n in names):
            return True
        if kv and index % 2 == 0:
            return True
    return False


def _fmt(shape: tuple[int, ...] | None) -> str:
    return "missing" if shape is None else "[" + ", ".join(str(d) for d in shape) + "]"


def uniform_blocks(ip_adapter: dict[str, torch.Tensor], names: tuple[str, ...], family: str,
                   expected: str) -> tuple[int, dict[str, tuple[int, ...]]]:
    """Check ``ip_adapter`` holds entries 0..n-1, each with exactly ``names``, every name with one shape.

    Returns ``(n, shapes of entry 0)``. Raises ``LayoutMismatch`` listing the first problems found
    (a gap, a missing or unexpected tensor, mixed widths): a half-written or stitched file.
    """
    numbered, loose = entries(ip_adapter)
    problems: list[str] = []
    if loose:
        problems.append(f"unexpected keys {', '.join(sorted(loose)[:3])}")
    if not numbered:
        raise LayoutMismatch(family, "it has no numbered per-block weights", expected)
    count = max(numbered) + 1
    gaps = [i for i in range(count) if i not in numbered]
    if gaps:
        what = f"entry {gaps[0]} is" if len(gaps) == 1 else f"entries {_listing(gaps)} are"
        problems.append(f"{what} missing (the file numbers 0..{count - 1})")
    reference = numbered[min(numbered)]
    for index in sorted(numbered):
        got = numbered[index]
        lacking = [n for n in names if n not in got]
        extra = sorted(n for n in got if n not in names)
        if lacking:
            problems.append(f"entry {index} lacks {', '.join(lacking)}")
        if extra:
            problems.append(f"entry {index} has unexpected {', '.join(extra[:3])}")
        for n in names:
            if n in got and n in reference and got[n] != reference[n]:
                problems.append(f"entry {index}'s {n} is {_fmt(got[n])} but entry {min(numbered)}'s is "
                                f"{_fmt(reference[n])} (mixed widths)")
        if len(problems) >= 3:
            break
    if problems:
        raise LayoutMismatch(family, "; ".join(problems[:3]), expected)
    return count, reference


def _listing(indices: list[int], limit: int = 6) -> str:
    shown = ", ".join(str(i) for i in indices[:limit])
    return shown + (f" and {len(indices) - limit} more" if len(indices) > limit else "")


def need(shape: tuple[int, ...] | None, rank: int, key: str, family: str, expected: str) -> tuple[int, ...]:
    """``shape`` if the tensor exists with ``rank`` dimensions, else a ``LayoutMismatch`` naming the key."""
    if shape is None or len(shape) != rank:
        raise LayoutMismatch(family, f"its {key} is {_fmt(shape)}", expected)
    return shape
