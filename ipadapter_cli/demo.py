"""``demo``: start ComfyUI with the pack, run an example workflow, save the image, stop the server."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import edit
from .convert import convert
from .server import REPO_ROOT, ComfyServer, find_comfyui
from .workflow import load_workflow

DEFAULT_WORKFLOW = "ipadapter_sd15_standard.json"
DEMO_CHECKPOINT = "demo_sd15.safetensors"
REFERENCE_NAME = "ipadapter_demo_reference.png"


@dataclass
class DemoOptions:
    comfyui: str | None = None
    workflow: str = DEFAULT_WORKFLOW
    demo_models: bool = False
    models_dir: str | None = None
    steps: int | None = None
    size: int | None = None
    seed: int | None = None
    checkpoint: str | None = None
    image: str | None = None
    out: str = "ipadapter-demo-output"
    overrides: list[str] = field(default_factory=list)
    timeout: float = 1800.0
    keep_work: bool = False
    python: str | None = None


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def prepare_models(opts: DemoOptions) -> tuple[Path | None, Path | None]:
    """(models dir for the yaml, reference image) — the generated demo set with ``--demo-models``."""
    if not opts.demo_models:
        return (Path(opts.models_dir) if opts.models_dir else None), None
    import sys

    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tests.fixtures.demo_models import default_models_dir, write_demo_models

    target = Path(opts.models_dir) if opts.models_dir else default_models_dir()
    _say(f"demo models in {target} (the first run writes ~3.7 GB of random weights: about half a minute on a "
         "2-core machine with a fast disk)")
    paths = write_demo_models(target, opts.comfyui)
    return target, Path(paths["reference_image"])


def reference_image(opts: DemoOptions, generated: Path | None, input_dir: Path) -> str:
    """Put the reference picture in the server's input folder; returns the name LoadImage gets."""
    if opts.image:
        source = Path(opts.image)
    elif generated is not None:
        source = generated
    else:
        from tests.fixtures.demo_models import reference_image as make

        source = input_dir / REFERENCE_NAME
        make().save(source, "PNG")
        return source.name
    shutil.copyfile(source, input_dir / source.name)
    return source.name


def customise(prompt: dict, opts: DemoOptions, image_name: str) -> None:
    """Demo settings on the converted prompt: image, checkpoint, steps, size, seed, then ``--set``."""
    edit.set_inputs(prompt, "LoadImage", image=image_name)
    checkpoint = opts.checkpoint or (DEMO_CHECKPOINT if opts.demo_models else None)
    if checkpoint:
        edit.set_inputs(prompt, "CheckpointLoaderSimple", ckpt_name=checkpoint)
    for sampler in ("KSampler", "KSamplerAdvanced"):
        if opts.steps:
            edit.set_inputs(prompt, sampler, steps=opts.steps)
        if opts.seed is not None:
            key = "seed" if sampler == "KSampler" else "noise_seed"
            edit.set_inputs(prompt, sampler, **{key: opts.seed})
    if opts.size:
        edit.set_inputs(prompt, "EmptyLatentImage", width=opts.size, height=opts.size)
    for override in opts.overrides:
        edit.apply_override(prompt, override)


def run_demo(opts: DemoOptions) -> list[Path]:
    """The whole demo; returns the saved image paths."""
    root = find_comfyui(opts.comfyui)
    opts.comfyui = str(root)
    if opts.demo_models and opts.steps is None and opts.size is None:
        opts.steps, opts.size = 4, 256
        _say("random demo weights: using --steps 4 --size 256 (the picture is noise; the plumbing is the point)")
    workflow = load_workflow(opts.workflow)
    models_dir, generated = prepare_models(opts)
    work = Path(tempfile.mkdtemp(prefix="ipas-demo-"))
    server = ComfyServer(root, work, models_dir, **({"python": opts.python} if opts.python else {}))
    # The server log goes beside the images, so the file named here outlives the temporary work folder.
    out = Path(opts.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    server.log_path = out / "comfyui-server.log"
    try:
        _say(f"starting ComfyUI from {root} on {server.url} (server log: {server.log_path})")
        started = time.monotonic()
        server.start()
        _say(f"server up in {time.monotonic() - started:.0f} s")
        image_name = reference_image(opts, generated, server.input_dir)
        prompt = convert(workflow, server.client.object_info())
        customise(prompt, opts, image_name)
        _say(f"running {opts.workflow} ({len(prompt)} nodes)")
        started = time.monotonic()
        entry = server.client.run(prompt, timeout=opts.timeout)
        paths = server.client.save_images(entry, opts.out)
        _say(f"done in {time.monotonic() - started:.0f} s")
        for path in paths:
            _say(f"saved {path.resolve()}")
        if not paths:
            _say(f"the workflow saved no image; see the server log: {server.log_path}")
        return paths
    except Exception:
        opts.keep_work = True
        _say(f"failed; last lines of the server log:\n{server.tail(30)}")
        raise
    finally:
        server.stop()
        _say(f"server stopped; its log is kept at {server.log_path}")
        if opts.keep_work:
            _say(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
