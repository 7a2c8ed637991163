"""Put known bugs back into a scratch copy of the repo, one at a time, and report which ones the tests let through.

    ~/.cache/ipadapter-suite/venv/bin/python tests/mutations.py            # every mutation
    ~/.cache/ipadapter-suite/venv/bin/python tests/mutations.py --list     # names only
    ~/.cache/ipadapter-suite/venv/bin/python tests/mutations.py --only dualcfg-chunk2 --only preset-sdxl-row

Why: a test that passes whatever the code does proves nothing. Each mutation below is a bug that once got
past the whole suite (issue 16), or one the suite already catches (kept so that a weakened test shows up
here). The script copies the working tree's files (``git ls-files``: tracked, plus untracked files that
git does not ignore) into a temporary folder, never touching the checkout it runs from; then, for each
mutation, it makes one exact-string replacement, runs that mutation's test files there with this Python,
and puts the file back. A replacement whose text is not found is reported as "pattern missing" (the code
moved on: update the mutation), never as caught.

Not part of CI: it runs the listed test files once per mutation (several minutes). Its last output is in
tests/README.md. Exit status: 0 when every mutation was caught, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOST_PLUGIN = ("-p", "tests.host.pytest_plugin")


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    new_in_issue_16: bool = False  # survived the whole suite before issue 16


_DUALCFG_WHAT = "DualCFG at cfg2 = 1: the positive chunk (2) reads the negative's tokens when no chunk 0 is batched"
_DUALCFG_OLD = "k, v = (self.k_uncond, self.v_uncond) if chunk == 1 else (self.k_cond, self.v_cond)"
_DUALCFG_NEW = ("k, v = (self.k_uncond, self.v_uncond) if chunk == 1 or (chunk == 2 and 0 not in cond_or_uncond) "
                "else (self.k_cond, self.v_cond)")

MUTATIONS = [
    # --- bugs the suite let through before issue 16 ---
    Mutation("encoder-mask-key", "the Encoder's mask left out of the encoding cache's key", "nodes/encoding.py",
             "key = (id(clip_vision), self.digest(image), self.digest(mask), crop, chunk)",
             "key = (id(clip_vision), self.digest(image), crop, chunk)",
             ("tests/host/test_encoder_mask.py", "tests/host/test_encoding_cache_bytes.py"), True),
    Mutation("end-at-squared", "end_at -> end_at**2 in the percent -> sigma conversion", "nodes/host.py",
             "float(sampling.percent_to_sigma(end_at))", "float(sampling.percent_to_sigma(end_at ** 2))",
             ("tests/host/test_start_end.py",), True),
    Mutation("end-at-squared-unet", "end_at -> end_at**2 on the UNet path only (the DiT tests cannot see it)",
             "nodes/apply_core.py", "host.sigma_window(model, opts.start_at, opts.end_at)",
             "host.sigma_window(model, opts.start_at, opts.end_at ** 2)", ("tests/host/test_start_end.py",), True),
    Mutation("start-at-squared", "start_at -> start_at**2 in the percent -> sigma conversion", "nodes/host.py",
             "float(sampling.percent_to_sigma(start_at))", "float(sampling.percent_to_sigma(start_at ** 2))",
             ("tests/host/test_start_end.py",), True),
    Mutation("dualcfg-chunk2", _DUALCFG_WHAT, "ipadapter_core/attention.py", _DUALCFG_OLD, _DUALCFG_NEW,
             ("tests/core/test_failure_modes.py",), True),
    Mutation("dualcfg-chunk2-host", _DUALCFG_WHAT + " (real Guider_DualCFG sampling)", "ipadapter_core/attention.py",
             _DUALCFG_OLD, _DUALCFG_NEW, ("tests/host/test_reliability.py",), True),
    Mutation("preset-sdxl-row", "STANDARD's SDXL row deleted from models_config.yaml", "models_config.yaml",
             "    sdxl:\n      patterns: ['ip.adapter.sdxl.vit.h\\.(safetensors|bin)$']\n"
             "      file: ip-adapter_sdxl_vit-h.safetensors\n"
             "      url: https://huggingface.co/h94/IP-Adapter/resolve/main/sdxl_models/"
             "ip-adapter_sdxl_vit-h.safetensors\n"
             "      encoder: vit-h\n", "",
             ("tests/core/test_presets.py",), True),
    Mutation("migrate-area", "v1 interpolation 'area' migrated to a name PrepImageForClipVision does not have",
             "ipadapter_cli/migrate.py", '"area": "BOX"', '"area": "AREA"',
             ("tests/core/test_cli_migrate.py",), True),
    Mutation("migrate-image-socket", "the v1 encoder's 'image' socket not renamed to image_1",
             "ipadapter_cli/migrate.py", 'socket["name"] = "image_1"', 'socket["name"] = "image"',
             ("tests/core/test_cli_migrate.py",), True),
    Mutation("fuzz-nonfinite-weight", "a NaN/inf weight accepted (only the fuzz properties run)",
             "ipadapter_core/weighting.py", "if value is not None and not math.isfinite(value):",
             'if value is not None and not math.isfinite(value) and name != "weight":',
             ("tests/core/test_fuzz_apply.py",), True),
    Mutation("fuzz-unknown-weight-type", "an unknown weight_type silently gives weight 0 (only the fuzz properties "
             "run)", "ipadapter_core/weighting.py",
             "        else:\n            raise IPAdapterError(\n                f\"Unknown weight_type",
             "        elif False:\n            raise IPAdapterError(\n                f\"Unknown weight_type",
             ("tests/core/test_fuzz_apply.py",), True),
    Mutation("fixture-key-faces", "the fixture cache's version ignores face_models.py and demo_models.py",
             "tests/fixtures/cache.py", 'return sorted(Path(__file__).resolve().parent.glob("*.py"))',
             'return [p for p in sorted(Path(__file__).resolve().parent.glob("*.py")) '
             'if p.name not in ("face_models.py", "demo_models.py")]',
             ("tests/core/test_fixture_cache.py",), True),
    # --- bugs the suite already caught: a weakened test shows up here ---
    Mutation("middle-block-skipped", "the UNet's middle-block attn2 left unpatched", "nodes/host.py",
             'if match.group(4):\n            block, number, index = "middle", 0, int(match.group(5))',
             "if match.group(4):\n            continue",
             ("tests/host/test_apply.py",)),
    Mutation("cond-uncond-swapped", "cond and uncond chunks read each other's tokens", "ipadapter_core/attention.py",
             "if chunk == 1 else (self.k_cond, self.v_cond)", "if chunk == 0 else (self.k_cond, self.v_cond)",
             ("tests/core/test_attention.py",)),
    Mutation("weights-only-bypassed", "torch.load without weights_only (pickles run code)", "ipadapter_core/loading.py",
             "weights_only=True", "weights_only=False",
             ("tests/core/test_loading.py", "tests/core/test_failure_modes.py")),
    Mutation("weight-type-extra-layer", "SDXL 'style transfer' also acting on transformer 7",
             "ipadapter_core/weighting.py", '"style transfer": _table([([6], "w", 1)]),',
             '"style transfer": _table([([6, 7], "w", 1)]),',
             ("tests/core/test_weighting.py",)),
]


def scratch_copy(dest: Path) -> None:
    """The working tree's files that git knows or would add (not ignored ones) under ``dest``."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        source = REPO / rel
        if not source.is_file():  # deleted in the working tree but still in the index
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def run_tests(root: Path, tests: tuple[str, ...], python: str, timeout: int) -> tuple[int, str, float]:
    """pytest on ``tests`` inside ``root``; (exit status, last summary line, seconds)."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")  # a restored file must never meet a mutant's .pyc
    command = [python, "-m", "pytest", *HOST_PLUGIN, "-p", "no:cacheprovider", "-q", "-x", "-m", "not slow",
               *tests]
    start = time.monotonic()
    try:
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {timeout}s", time.monotonic() - start
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return done.returncode, (lines[-1] if lines else done.stderr.strip()[-200:]), time.monotonic() - start


def verdict(returncode: int) -> str:
    # pytest: 0 all passed, 1 some test failed; anything else (collection error, timeout ...) proves nothing.
    return {0: "SURVIVED", 1: "caught"}.get(returncode, f"error (rc={returncode})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[], help="run only this mutation (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--python", default=sys.executable, help="the Python with torch, pytest and ComfyUI's needs")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per pytest run")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy (its path is printed)")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    unknown = set(args.only) - {m.name for m in MUTATIONS}
    if unknown:
        parser.error(f"unknown mutation(s): {', '.join(sorted(unknown))}")
    if args.list:
        for m in chosen:
            print(f"{m.name:26} {m.file:30} {m.what}")
        return 0

    scratch = Path(tempfile.mkdtemp(prefix="ipas-mutants-"))
    root = scratch / "repo"
    try:
        scratch_copy(root)
        print(f"scratch copy: {root}", flush=True)
        every_test = tuple(sorted({t for m in chosen for t in m.tests}))
        code, summary, seconds = run_tests(root, every_test, args.python, args.timeout)
        print(f"baseline (no mutation): {summary} [{seconds:.0f}s]", flush=True)
        if code != 0:
            print("the unmutated copy does not pass these tests: fix that first", file=sys.stderr)
            return 2
        rows = []
        for m in chosen:
            path = root / m.file
            original = path.read_text()
            found = original.count(m.old)
            if found == 0:
                rows.append((m, "pattern missing", "", 0.0))
                print(f"{m.name}: pattern missing", flush=True)
                continue
            path.write_text(original.replace(m.old, m.new))
            try:
                code, summary, seconds = run_tests(root, m.tests, args.python, args.timeout)
            finally:
                path.write_text(original)
            rows.append((m, verdict(code), summary, seconds))
            print(f"{m.name}: {verdict(code)} ({summary}) [{seconds:.0f}s]", flush=True)
    finally:
        if args.keep:
            print(f"kept: {root}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)

    print()
    print(f"| {'mutation':26} | {'since':8} | {'result':15} | tests run |")
    print(f"|{'-' * 28}|{'-' * 10}|{'-' * 17}|-----------|")
    for m, result, _, _ in rows:
        since = "issue 16" if m.new_in_issue_16 else "before"
        print(f"| {m.name:26} | {since:8} | {result:15} | {', '.join(Path(t).name for t in m.tests)} |")
    survivors = [m.name for m, result, _, _ in rows if result != "caught"]
    print()
    print("every mutation was caught" if not survivors else f"NOT caught: {', '.join(survivors)}")
    return 0 if not survivors else 1


if __name__ == "__main__":
    sys.exit(main())
