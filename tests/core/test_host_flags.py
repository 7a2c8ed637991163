"""ComfyServer.command() passes the flags the host's cli_args.py defines: newer hosts get --offline and
--disable-assets, 0.3.64 gets --disable-api-nodes (it rejects --disable-assets)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ipadapter_cli import server as server_module
from ipadapter_cli.server import ComfyServer, host_has_flag

OLD_FLAGS = '''import argparse
parser = argparse.ArgumentParser()
parser.add_argument("--disable-api-nodes", action="store_true", help="Disable loading all api nodes.")
parser.add_argument("--database-url", type=str, default=None)
'''
NEW_FLAGS = OLD_FLAGS + '''parser.add_argument("--offline", action="store_true", help="Keep the frontend offline.")
parser.add_argument('--disable-assets', action='store_true', help="Disable the assets system.")
'''


def _host(tmp_path: Path, cli_args: str) -> Path:
    root = tmp_path / "ComfyUI"
    (root / "comfy").mkdir(parents=True)
    (root / "main.py").write_text("")
    (root / "comfy" / "cli_args.py").write_text(cli_args)
    return root


def _command(root: Path, work: Path) -> list[str]:
    return ComfyServer(root, work, python="python").command()


def test_newer_host_gets_offline_and_disable_assets(tmp_path):
    cmd = _command(_host(tmp_path, NEW_FLAGS), tmp_path / "work")
    assert "--offline" in cmd and "--disable-assets" in cmd
    assert "--disable-api-nodes" not in cmd  # deprecated there: a start-up warning
    assert cmd[cmd.index("--database-url") + 1] == "sqlite:///:memory:"


def test_older_host_gets_disable_api_nodes_only(tmp_path):
    cmd = _command(_host(tmp_path, OLD_FLAGS), tmp_path / "work")
    assert "--disable-api-nodes" in cmd
    assert "--offline" not in cmd and "--disable-assets" not in cmd  # argparse errors there


def test_a_flag_named_only_in_help_text_is_not_detected(tmp_path):
    text = OLD_FLAGS + ('parser.add_argument("--enable-assets", action="store_true",'
                        ' help="Use --disable-assets or --offline.")\n')
    root = _host(tmp_path, text)
    assert not host_has_flag(root, "--disable-assets") and not host_has_flag(root, "--offline")
    assert host_has_flag(root, "--enable-assets")
    cmd = _command(root, tmp_path / "work")
    assert "--disable-assets" not in cmd and "--disable-api-nodes" in cmd


def test_a_missing_cli_args_means_the_old_flags(tmp_path):
    root = _host(tmp_path, "")
    (root / "comfy" / "cli_args.py").unlink()
    cmd = _command(root, tmp_path / "work")
    assert "--disable-api-nodes" in cmd and "--disable-assets" not in cmd


# --- against the real ComfyUI checkout: its own argparse must accept the command ------------------------

def _real_comfyui() -> Path | None:
    configured = os.environ.get("COMFYUI_PATH")
    root = Path(configured).expanduser() if configured else Path.home() / "ComfyUI"
    return root.resolve() if (root / "comfy" / "cli_args.py").is_file() and (root / "main.py").is_file() else None


def _parse_with_host(root: Path, flags: list[str]) -> dict:
    """Run the host's own cli_args parser on ``flags`` (no ComfyUI start); argparse errors fail the test."""
    code = (
        "import json, sys\n"
        "import comfy.options\n"
        "comfy.options.enable_args_parsing()\n"
        f"sys.argv = ['main.py', *{flags!r}]\n"
        "from comfy.cli_args import args\n"
        "print(json.dumps({k: getattr(args, k, None) for k in "
        "('disable_api_nodes', 'offline', 'disable_assets', 'cpu', 'database_url')}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"the host's argparse rejected {flags}:\n{done.stderr[-2000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def _flags(cmd: list[str]) -> list[str]:
    assert cmd[1] == "main.py"
    return cmd[2:]


@pytest.mark.skipif(_real_comfyui() is None, reason="no ComfyUI checkout (COMFYUI_PATH or ~/ComfyUI)")
def test_the_real_host_accepts_the_command(tmp_path):
    root = _real_comfyui()
    cmd = _command(root, tmp_path / "work")
    parsed = _parse_with_host(root, _flags(cmd))
    assert parsed["cpu"] is True and parsed["database_url"] == "sqlite:///:memory:"
    if host_has_flag(root, "--offline"):
        assert parsed["offline"] is True
    else:  # 0.3.64 and others before cli_args @03294572
        assert "--disable-api-nodes" in cmd and parsed["disable_api_nodes"] is True
    assert ("--disable-assets" in cmd) == host_has_flag(root, "--disable-assets")


@pytest.mark.skipif(_real_comfyui() is None, reason="no ComfyUI checkout (COMFYUI_PATH or ~/ComfyUI)")
def test_the_real_parser_given_the_newer_flags_takes_the_newer_branch(tmp_path):
    """The real cli_args.py (copied to tmp) plus the two newer flags spelled as newer ComfyUI spells them."""
    real = _real_comfyui()
    if host_has_flag(real, "--offline") and host_has_flag(real, "--disable-assets"):
        pytest.skip("this checkout already has the newer flags; test_the_real_host_accepts_the_command covers it")
    root = tmp_path / "ComfyUI"
    (root / "comfy").mkdir(parents=True)
    (root / "main.py").write_text("")
    shutil.copy(real / "comfy" / "options.py", root / "comfy" / "options.py")
    text = (real / "comfy" / "cli_args.py").read_text()
    marker = "\nif comfy.options.args_parsing:"
    assert marker in text, "the real cli_args.py changed shape; update this test"
    added = ('\nparser.add_argument("--offline", action="store_true", help="Keep the frontend offline.")'
             '\nparser.add_argument("--disable-assets", action="store_true", help="Disable the assets system.")\n')
    (root / "comfy" / "cli_args.py").write_text(text.replace(marker, added + marker, 1))

    cmd = _command(root, tmp_path / "work")
    assert "--offline" in cmd and "--disable-assets" in cmd and "--disable-api-nodes" not in cmd
    parsed = _parse_with_host(root, _flags(cmd))
    assert parsed["offline"] is True and parsed["disable_assets"] is True


def test_each_checkout_is_asked_separately(tmp_path):
    """command() asks the host each time (no cached answer from another checkout)."""
    old, new = _host(tmp_path / "a", OLD_FLAGS), _host(tmp_path / "b", NEW_FLAGS)
    assert "--disable-api-nodes" in _command(old, tmp_path / "w1")
    assert "--offline" in _command(new, tmp_path / "w2")
    assert server_module.offline_flag(old) == "--disable-api-nodes"
    assert server_module.assets_flags(new) == ["--disable-assets"]
