"""Where the few-token attention path pays: it against the SDPA call it replaces, per site shape and token count.

For the attn2 shapes of SD1.5 at 512 px and SDXL at 1024 px (batch 2), and 4/16/64/257 image tokens, this
times, interleaved, (a) ``F.scaled_dot_product_attention`` on head views of q/K'/V' (what the host's SDPA
wrapper runs) plus the reshape, scale and add it leaves to the caller, and (b)
``ipadapter_core.few_token_attention.add_attention_`` adding into the block output in place. It prints the
ratio b/a per shape; ``few_token_attention.MAX_TOKENS`` should sit where the ratio crosses 1 on the large
sites. Pure PyTorch: no ComfyUI needed. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import REPO_ROOT, load_average, pin_allocator

sys.path.insert(0, str(REPO_ROOT))
from ipadapter_core import few_token_attention as fta  # noqa: E402

# (label, queries, inner, heads): every distinct attn2 shape of the two families.
SHAPES = [
    ("SD1.5 64x64", 4096, 320, 8), ("SD1.5 32x32", 1024, 640, 8), ("SD1.5 16x16", 256, 1280, 8),
    ("SD1.5 8x8", 64, 1280, 8), ("SDXL 64x64", 4096, 640, 10), ("SDXL 32x32", 1024, 1280, 20),
]
TOKENS = (4, 16, 64, 257)


def library_call(q, k, v, out, heads: int, weight: float) -> None:
    b, n, inner = q.shape
    d = inner // heads
    qh, kh, vh = (t.view(b, -1, heads, d).transpose(1, 2) for t in (q, k, v))
    ip = F.scaled_dot_product_attention(qh, kh, vh).transpose(1, 2).reshape(b, n, inner)
    out.add_(ip.mul_(weight))


def elapsed_ms(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


def compare(n: int, inner: int, heads: int, tokens: int, repeats: int, generator: torch.Generator) -> tuple:
    """(median ms of the SDPA call, of the few-token path, worst |difference| of their results)."""
    q = torch.randn(2, n, inner, generator=generator)
    k, v = (torch.randn(2, tokens, inner, generator=generator) for _ in range(2))
    out = torch.randn(2, n, inner, generator=generator)
    kh, vh = fta.split_heads(k, v, heads)
    a_out, b_out = out.clone(), out.clone()
    library_call(q, k, v, a_out, heads, 0.8)
    fta.add_attention_(b_out, q, kh, vh, 0.8)
    a, b = [], []
    for _ in range(repeats + 1):  # interleaved, so drift hits both alike; the first pair warms up
        a.append(elapsed_ms(lambda: library_call(q, k, v, out, heads, 0.8)))
        b.append(elapsed_ms(lambda: fta.add_attention_(out, q, kh, vh, 0.8)))
    return statistics.median(a[1:]), statistics.median(b[1:]), float((a_out - b_out).abs().max())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--native-malloc", action="store_true", help="glibc's default allocator thresholds")
    parser.add_argument("--json", type=Path, metavar="OUT")
    args = parser.parse_args(argv)
    allocator = pin_allocator(args.native_malloc)
    generator = torch.Generator().manual_seed(0)
    print("IPAdapter Suite: few-token attention vs the SDPA call (fp32, CPU, batch 2; ms, medians)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; MAX_TOKENS = {fta.MAX_TOKENS}; "
          f"load {load_average()}; malloc: {allocator}")
    print(f"  {'site':<13} {'heads':>5} {'tokens':>6} {'sdpa':>8} {'few-tok':>8} {'ratio':>6}  worst |diff|")
    rows = []
    with torch.inference_mode():
        for label, n, inner, heads in SHAPES:
            for tokens in TOKENS:
                ma, mb, diff = compare(n, inner, heads, tokens, args.repeats, generator)
                taken = fta.worthwhile(torch.empty(0), heads, tokens)
                rows.append({"site": label, "heads": heads, "tokens": tokens, "sdpa_ms": ma, "few_token_ms": mb,
                             "max_abs_diff": diff, "taken": taken})
                print(f"  {label:<13} {heads:>5} {tokens:>6} {ma:8.3f} {mb:8.3f} {mb / ma:6.2f}  {diff:.1e}"
                      f"{'  <- taken' if taken else ''}", flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"torch": torch.__version__, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
