"""``siglip-head``: copy the SigLIP attention-pooling head out of a full SigLIP checkpoint into a small file.

InstantX FLUX.1-dev-IP-Adapter needs SigLIP's pooled output, and some SigLIP files people use in ComfyUI
(e.g. a vision-only rehost) lack the ``vision_model.head.*`` tensors. Extracting them from the original
``google/siglip-so400m-patch14-384`` ``model.safetensors`` gives a ``<stem>.head.safetensors`` (15 M
parameters, ~60 MB at fp32) to put beside the encoder in ``models/clip_vision``. The file also carries
the encoder's fingerprint tensors, so the pack can tell which encoder a head belongs to. Torch is
imported only when the command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SUFFIX = ".head.safetensors"


@dataclass(frozen=True)
class HeadFile:
    """What ``extract_head`` wrote."""

    path: Path
    width: int
    mlp: int
    tensors: int
    size: int  # bytes


def _core():
    """``ipadapter_core.dit.siglip_head`` and the error type, importable whatever the working directory is."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from ipadapter_core.dit import siglip_head
    from ipadapter_core.errors import IPAdapterError

    return siglip_head, IPAdapterError


def head_file_path(src: str | os.PathLike, dst: str | os.PathLike | None = None) -> Path:
    """``dst`` if it names a file; ``<dst or SRC's folder>/<SRC stem>.head.safetensors`` otherwise."""
    src = Path(src)
    if dst is not None and not Path(dst).is_dir():
        return Path(dst)
    folder = Path(dst) if dst is not None else src.parent
    return folder / f"{src.stem}{SUFFIX}"


def extract_head(src: str | os.PathLike, dst: str | os.PathLike | None = None) -> HeadFile:
    """Write SRC's ``vision_model.head.*`` (plus its fingerprint tensors) to ``head_file_path(src, dst)``.

    Raises FileNotFoundError for a missing SRC and IPAdapterError when SRC is unreadable or has no
    complete head.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    core, IPAdapterError = _core()
    src = Path(src)
    if not src.is_file():
        raise FileNotFoundError(f"no file at {src}")
    out = head_file_path(src, dst)
    if out.resolve() == src.resolve():
        raise IPAdapterError(f"The output {out} is the input file itself.", fix="give another DST")
    try:
        with safe_open(str(src), framework="pt", device="cpu") as f:
            keys = list(f.keys())
    except Exception as exc:  # the message below names the file and what to give instead
        raise IPAdapterError(
            f"{src.name} is not a readable .safetensors file ({str(exc).splitlines()[0] if str(exc) else exc!r}).",
            expected="a SigLIP model.safetensors", fix="re-download it; .bin checkpoints are not supported here",
        ) from None
    head = core.read_head_tensors(src)
    if not head:
        what = ("a vision encoder without its head (vision-only copies drop it)"
                if any(k.startswith("vision_model.") for k in keys) else "no SigLIP vision tensors at all")
        raise IPAdapterError(
            f"{src.name} has no SigLIP pooling head ({core.HEAD_PREFIX}*): its {len(keys)} tensors are {what}.",
            expected=f"a SigLIP checkpoint with {core.HEAD_PREFIX}probe, attention, layernorm and mlp tensors",
            fix="run this on google/siglip-so400m-patch14-384's model.safetensors (it has the head) and put the "
                f"{SUFFIX} file it writes beside {src.name} in models/clip_vision",
        )
    width, mlp = core.check_head(head, source=src.name)  # raises for an incomplete or inconsistent head
    with safe_open(str(src), framework="pt", device="cpu") as f:
        fingerprint = {k: f.get_tensor(k) for k in core.FINGERPRINT_KEYS if k in keys}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        save_file({k: t.contiguous() for k, t in {**head, **fingerprint}.items()}, str(tmp),
                  metadata={"source": src.name, "content": "SigLIP attention-pooling head"})
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return HeadFile(out, width, mlp, len(head) + len(fingerprint), out.stat().st_size)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``siglip-head`` on the CLI's subcommands."""
    p = sub.add_parser("siglip-head", help="extract the SigLIP pooling head (needed by InstantX Flux) to a small file")
    p.add_argument("src", metavar="SRC", help="a SigLIP model.safetensors that contains vision_model.head.*")
    p.add_argument("dst", metavar="DST", nargs="?",
                   help=f"output file or folder (default: <SRC stem>{SUFFIX} beside SRC)")


def cmd_siglip_head(args: argparse.Namespace) -> int:
    _, IPAdapterError = _core()
    try:
        done = extract_head(args.src, args.dst)
    except IPAdapterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {done.path} ({done.tensors} tensors, {done.size / 2**20:.1f} MiB): "
          f"pooling head {done.width} wide, MLP {done.mlp}")
    print("put it in models/clip_vision beside the SigLIP encoder file you load")
    return 0
