"""IPAdapter Suite's command line: run a workflow headlessly, run the demo, check an installation
(doctor), extract a SigLIP pooling head. Run it with the set-up's interpreter,
~/.cache/ipadapter-suite/venv/bin/python, from the repository root."""

from __future__ import annotations

import argparse
import sys
import time

from . import edit, siglip_head
from .client import ComfyClient, ComfyError
from .convert import ConversionError, convert
from .demo import DEFAULT_WORKFLOW, DemoOptions, run_demo
from .doctor import cmd_doctor
from .workflow import load_workflow


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ipadapter_cli", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a UI- or API-format workflow on a running ComfyUI server")
    run.add_argument("workflow", help="a workflow .json file, or the name of one in workflows/")
    run.add_argument("--server", default="http://127.0.0.1:8188", help="server URL (default %(default)s)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="NODE.input=value",
                     help="override an input; NODE is an id, class_type or title (repeatable)")
    run.add_argument("--upload", action="append", default=[], metavar="FILE",
                     help="upload a file to the server's input folder first (repeatable)")
    run.add_argument("--out", default="ipadapter-output", help="where images are saved (default %(default)s)")
    run.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the result")
    run.add_argument("--print-prompt", action="store_true", help="print the API-format prompt and exit")

    demo = sub.add_parser("demo", help="start ComfyUI with this pack, run an example workflow, stop it")
    demo.add_argument("--comfyui", help="ComfyUI checkout (default $COMFYUI_PATH, else ~/ComfyUI)")
    demo.add_argument("--demo-models", action="store_true",
                      help="generate a random-weight SD1.5 + IP-Adapter model set and use it instead of your models")
    demo.add_argument("--models-dir", help="a models folder (checkpoints/, clip_vision/, ipadapter/) to add")
    demo.add_argument("--workflow", default=DEFAULT_WORKFLOW, help="workflow name or path (default %(default)s)")
    demo.add_argument("--steps", type=int, help="sampler steps")
    demo.add_argument("--size", type=int, help="image width and height in pixels")
    demo.add_argument("--seed", type=int, help="sampler seed")
    demo.add_argument("--checkpoint", help="checkpoint file name in models/checkpoints")
    demo.add_argument("--image", help="reference picture (default: a generated test picture)")
    demo.add_argument("--set", dest="overrides", action="append", default=[], metavar="NODE.input=value")
    demo.add_argument("--out", default="ipadapter-demo-output", help="where images are saved (default %(default)s)")
    demo.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the result")
    demo.add_argument("--python", help="interpreter for ComfyUI (default: this one)")
    demo.add_argument("--keep-work", action="store_true",
                      help="keep the temp folder (ComfyUI's input/output/user folders, the model paths yaml); "
                           "the server log is kept in --out either way")

    doctor = sub.add_parser("doctor", help="identify every IP-Adapter, CLIP vision and FaceID LoRA file by content")
    doctor.add_argument("--comfyui", help="ComfyUI folder (default $COMFYUI_PATH, else ~/ComfyUI)")
    siglip_head.add_parser(sub)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    client = ComfyClient(args.server)
    if not client.alive():
        print(f"error: no ComfyUI server answers at {args.server}", file=sys.stderr)
        return 2
    for path in args.upload:
        print(f"uploaded {path} as {client.upload_image(path)}")
    prompt = convert(load_workflow(args.workflow), client.object_info())
    for override in args.overrides:
        edit.apply_override(prompt, override)
    if args.print_prompt:
        import json

        print(json.dumps(prompt, indent=2))
        return 0
    started = time.monotonic()
    entry = client.run(prompt, timeout=args.timeout)
    paths = client.save_images(entry, args.out)
    print(f"finished in {time.monotonic() - started:.1f} s")
    for path in paths:
        print(f"saved {path.resolve()}")
    if not paths:
        print("the workflow produced no output images")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    opts = DemoOptions(**{k: v for k, v in vars(args).items() if k in DemoOptions.__dataclass_fields__})
    return 0 if run_demo(opts) else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        commands = {"run": cmd_run, "demo": cmd_demo, "doctor": cmd_doctor, "siglip-head": siglip_head.cmd_siglip_head}
        return commands[args.command](args)
    except (ComfyError, ConversionError, edit.OverrideError, FileNotFoundError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
