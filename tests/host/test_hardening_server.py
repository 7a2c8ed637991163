"""Issue 17 on a real server: malformed uploads through ``/upload/image`` leave every node of the pack listed.

Before the fix, one 29-byte file with a broken header in ``input/`` made Load Embeds' listing raise, so the
node vanished from ``/object_info`` for every client until someone deleted the file.
"""

from __future__ import annotations

import json

import pytest

from ipadapter_cli.client import ExecutionFailed
from tests.host.server_fixtures import demo_server  # noqa: F401  (the shared server fixture)

pytestmark = pytest.mark.slow


class _OpensAFile:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _framed(raw: bytes) -> bytes:
    return len(raw).to_bytes(8, "little") + raw


def test_malformed_uploads_leave_every_node_listed_and_working(demo_server, tmp_path):  # noqa: F811
    import torch

    server, client = demo_server, demo_server.client
    marker = tmp_path / "ran"
    files = {
        "ipas_broken.safetensors": b"\x15\x00\x00\x00\x00\x00\x00\x00" + b'{"__metadata__": 123}',
        "ipas_meta_list.safetensors": _framed(json.dumps({"__metadata__": ["x"]}).encode()),
        "ipas_deep.safetensors": _framed(b"[" * 50_000 + b"]" * 50_000),
        "ipas_not_utf8.safetensors": _framed(b'{"__metadata__": {"format": "\xff"}}'),
    }
    before = set(server.object_info)
    uploaded = []
    try:
        for name, data in files.items():
            path = tmp_path / name
            path.write_bytes(data)
            uploaded.append(client.upload_image(path))
        evil = tmp_path / "ipas_evil.ipadpt"
        torch.save(_OpensAFile(str(marker)), evil)
        uploaded.append(client.upload_image(evil))

        info = client.object_info()
        assert before <= set(info), f"nodes gone from /object_info: {sorted(before - set(info))}"
        listed = info["IPAdapterLoadEmbeds"]["input"]["required"]["embeds"][0]
        assert not any(name in listed for name in files), listed
        assert client.get_json("/object_info/IPAdapterLoadEmbeds")["IPAdapterLoadEmbeds"]["name"]

        # the listed pickle is refused when picked (weights-only here; refused outright on torch < 2.10)
        prompt = {"1": {"class_type": "IPAdapterLoadEmbeds", "inputs": {"embeds": "ipas_evil.ipadpt"}},
                  "2": {"class_type": "IPAdapterSaveEmbeds", "inputs": {"embeds": ["1", 0],
                                                                        "filename_prefix": "ipas_hardening"}}}
        with pytest.raises(ExecutionFailed) as err:
            client.run(prompt, timeout=120)
        assert "ipas_evil.ipadpt" in str(err.value) and "IPAdapterSuite" in str(err.value)
        assert not marker.exists()
    finally:
        for name in uploaded:
            (server.input_dir / name).unlink(missing_ok=True)
