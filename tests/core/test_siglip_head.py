"""SigLIP attention-pooling head: math vs transformers, reading it from files, matching an encoder, the CLI.

Random weights keyed as in the HF SigLIP checkpoint (tests/fixtures/dit_adapters.siglip_head_state_dict) at
reduced widths (64 wide, MLP 128).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import SiglipVisionConfig
from transformers.models.siglip.modeling_siglip import SiglipMultiheadAttentionPoolingHead

from ipadapter_cli.__main__ import main as cli_main
from ipadapter_cli.siglip_head import extract_head, head_file_path
from ipadapter_core.dit.siglip_head import (
    FINGERPRINT_KEYS,
    HEAD_NAMES,
    HEAD_PREFIX,
    build_head,
    encoder_fingerprint,
    head_keys,
    heads_for_width,
    matches_encoder,
    read_head_tensors,
)
from ipadapter_core.errors import IPAdapterError
from tests.fixtures.dit_adapters import siglip_head_specs, siglip_head_state_dict

REPO_ROOT = Path(__file__).resolve().parents[2]
WIDTH, MLP = 64, 128


def head_tensors(seed: int = 0, sharpen: float = 1.0) -> dict[str, torch.Tensor]:
    """Fixture head; ``sharpen`` scales the q/k projections and fc1, so the probe's attention is far from uniform
    and the MLP's activation works where tanh-GELU and exact GELU differ (the std-0.02 fixture is nearly linear)."""
    sd = siglip_head_state_dict(seed=seed, width=WIDTH, mlp=MLP)
    w = sd[f"{HEAD_PREFIX}attention.in_proj_weight"].clone()
    w[: 2 * WIDTH] *= sharpen
    sd[f"{HEAD_PREFIX}attention.in_proj_weight"] = w
    sd[f"{HEAD_PREFIX}mlp.fc1.weight"] = sd[f"{HEAD_PREFIX}mlp.fc1.weight"] * sharpen
    return sd


def encoder_tensors(seed: int = 1) -> dict[str, torch.Tensor]:
    """A few SigLIP encoder tensors with their published names (enough to stand for the file around the head)."""
    gen = torch.Generator().manual_seed(seed)
    sd = {key: torch.randn(WIDTH, generator=gen) for key in FINGERPRINT_KEYS}
    sd["vision_model.encoder.layers.0.layer_norm1.weight"] = torch.randn(WIDTH, generator=gen)
    sd["text_model.final_layer_norm.weight"] = torch.randn(WIDTH, generator=gen)
    return sd


def tokens(n: int = 3, length: int = 10, seed: int = 2) -> torch.Tensor:
    return torch.randn(n, length, WIDTH, generator=torch.Generator().manual_seed(seed))


# --- the math --------------------------------------------------------------------------------


@pytest.mark.parametrize("heads", [2, 4])
def test_head_matches_transformers(heads):
    sd = head_tensors(sharpen=20.0)
    config = SiglipVisionConfig(hidden_size=WIDTH, num_attention_heads=heads, intermediate_size=MLP)
    theirs = SiglipMultiheadAttentionPoolingHead(config).eval()
    theirs.load_state_dict({k.removeprefix(HEAD_PREFIX): t for k, t in sd.items()}, strict=True)
    ours = build_head(sd, heads=heads)
    x = tokens()
    with torch.no_grad():
        want = theirs(x)
    got = ours(x)
    assert got.shape == (3, WIDTH)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    # The head count is part of the math: the other split is measurably different on these weights.
    other = build_head(sd, heads=6 - heads)(x)
    assert (other - want).abs().max() > 1e-3
    assert (got[0] - got[1]).abs().max() > 1e-2  # the tokens reach the output


def test_head_count_rule_and_published_layout():
    assert heads_for_width(1152) == 16  # so400m-patch14-384 (ComfyUI's clip_vision_siglip_384.json)
    with pytest.raises(IPAdapterError, match="head count"):
        heads_for_width(WIDTH)
    with pytest.raises(IPAdapterError, match="head count"):
        build_head(head_tensors())  # 64 wide: no published default, heads= is required
    # Published so400m shapes, as meta tensors: the default rule gives 16 heads and every key fits.
    sd = {key: torch.empty(shape, device="meta") for key, shape, _ in siglip_head_specs()}
    head = build_head(sd)
    assert head.attention.num_heads == 16 and head.mlp.fc1.out_features == 4304


def test_build_head_accepts_stripped_names_and_keeps_dtype():
    sd = {k.removeprefix(HEAD_PREFIX): t.to(torch.float64) for k, t in head_tensors().items()}
    head = build_head(sd, heads=2)
    assert head.probe.dtype == torch.float64 and not head.training
    assert head(tokens()).dtype == torch.float64


def test_build_head_errors_name_the_problem():
    sd = head_tensors()
    incomplete = {k: t for k, t in sd.items() if not k.endswith("mlp.fc2.bias")}
    with pytest.raises(IPAdapterError, match=r"vision_model\.head\.mlp\.fc2\.bias missing") as err:
        build_head(incomplete, heads=2, source="my_siglip.safetensors")
    assert "my_siglip.safetensors" in str(err.value) and "siglip-head" in str(err.value)
    bad = dict(sd)
    bad[f"{HEAD_PREFIX}mlp.fc2.weight"] = torch.zeros(WIDTH, MLP + 1)
    with pytest.raises(IPAdapterError, match=r"mlp\.fc2\.weight \(64, 129\) \(expected \(64, 128\)\)"):
        build_head(bad, heads=2)
    with pytest.raises(IPAdapterError, match="cannot be split into 5"):
        build_head(sd, heads=5)


# --- reading files -----------------------------------------------------------------------------


def test_head_keys_filters_by_prefix():
    keys = ["vision_model.head.probe", "vision_model.post_layernorm.weight", "head.probe",
            "vision_model.head.mlp.fc1.bias"]
    assert head_keys(keys) == ["vision_model.head.probe", "vision_model.head.mlp.fc1.bias"]


def test_read_head_tensors(tmp_path):
    head = head_tensors()
    full = tmp_path / "siglip.safetensors"
    save_file({**encoder_tensors(), **head}, str(full))
    only = tmp_path / "siglip.head.safetensors"
    save_file(head, str(only))
    for path in (full, only):
        got = read_head_tensors(path)
        assert got is not None and sorted(got) == sorted(HEAD_PREFIX + n for n in HEAD_NAMES)
        for key, t in head.items():
            assert torch.equal(got[key], t)

    headless = tmp_path / "sigclip_vision_patch14_384.safetensors"
    save_file(encoder_tensors(), str(headless))
    assert read_head_tensors(headless) is None
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(os.urandom(4096))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    for path in (garbage, truncated, tmp_path / "missing.safetensors", tmp_path):
        assert read_head_tensors(path) is None


# --- which file a loaded encoder came from -----------------------------------------------------


def test_matches_encoder(tmp_path):
    enc = encoder_tensors(seed=1)
    path = tmp_path / "a.safetensors"
    save_file({**enc, **head_tensors()}, str(path))
    loaded = {**encoder_tensors(seed=1), "vision_model.encoder.layers.1.mlp.fc1.weight": torch.zeros(2, 2)}
    reference = encoder_fingerprint(loaded)
    assert sorted(reference) == sorted(FINGERPRINT_KEYS)
    assert matches_encoder(path, reference)
    # The same encoder held in half precision (ComfyUI may load it as fp16 or bf16) still matches.
    assert matches_encoder(path, {k: t.to(torch.bfloat16) for k, t in reference.items()})
    assert matches_encoder(path, {k: t.half() for k, t in reference.items()})
    # Another checkpoint, a missing key, a shape difference, nothing to compare, an unreadable file: no match.
    assert not matches_encoder(path, encoder_fingerprint(encoder_tensors(seed=2)))
    nudged = dict(reference)
    nudged[FINGERPRINT_KEYS[0]] = reference[FINGERPRINT_KEYS[0]] * 1.05
    assert not matches_encoder(path, nudged)
    assert not matches_encoder(path, {**reference, "vision_model.pre_layrnorm.weight": torch.ones(WIDTH)})
    assert not matches_encoder(path, {FINGERPRINT_KEYS[0]: torch.ones(WIDTH + 1)})
    assert not matches_encoder(path, {})
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 64)
    assert not matches_encoder(tmp_path / "broken.safetensors", reference)


# --- the CLI -----------------------------------------------------------------------------------


def test_extract_head_round_trip(tmp_path):
    head, enc = head_tensors(seed=3), encoder_tensors(seed=4)
    src = tmp_path / "models" / "siglip-so400m-patch14-384.safetensors"
    src.parent.mkdir()
    save_file({**enc, **head}, str(src))

    done = extract_head(src)
    assert done.path == src.parent / "siglip-so400m-patch14-384.head.safetensors" == head_file_path(src)
    assert (done.width, done.mlp, done.tensors) == (WIDTH, MLP, len(HEAD_NAMES) + len(FINGERPRINT_KEYS))
    got = read_head_tensors(done.path)
    assert sorted(got) == sorted(head) and all(torch.equal(got[k], head[k]) for k in head)
    # The head file identifies its encoder (so the host can pair it with a CLIP_VISION loaded from a headless copy).
    assert matches_encoder(done.path, encoder_fingerprint(enc))
    assert not matches_encoder(done.path, encoder_fingerprint(encoder_tensors(seed=5)))
    x = tokens()
    torch.testing.assert_close(build_head(got, heads=2)(x), build_head(head, heads=2)(x), atol=0, rtol=0)

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert extract_head(src, out_dir).path == out_dir / "siglip-so400m-patch14-384.head.safetensors"
    assert extract_head(src, tmp_path / "named.safetensors").path == tmp_path / "named.safetensors"


def test_extract_head_errors(tmp_path, capsys):
    headless = tmp_path / "sigclip_vision_patch14_384.safetensors"
    save_file(encoder_tensors(), str(headless))
    with pytest.raises(IPAdapterError, match="has no SigLIP pooling head"):
        extract_head(headless)
    assert cli_main(["siglip-head", str(headless)]) == 1
    assert "has no SigLIP pooling head" in capsys.readouterr().err
    assert not head_file_path(headless).exists()

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(os.urandom(256))
    with pytest.raises(IPAdapterError, match="not a readable .safetensors file"):
        extract_head(garbage)
    incomplete = tmp_path / "incomplete.safetensors"
    save_file({k: t for k, t in head_tensors().items() if "layernorm" not in k}, str(incomplete))
    with pytest.raises(IPAdapterError, match="incomplete SigLIP pooling head"):
        extract_head(incomplete)
    with pytest.raises(FileNotFoundError):
        extract_head(tmp_path / "missing.safetensors")
    with pytest.raises(IPAdapterError, match="input file itself"):
        extract_head(incomplete, incomplete)


def test_cli_subprocess(tmp_path):
    src = tmp_path / "model.safetensors"
    save_file({**encoder_tensors(), **head_tensors()}, str(src))
    proc = subprocess.run([sys.executable, "-m", "ipadapter_cli", "siglip-head", str(src)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {tmp_path / 'model.head.safetensors'}" in proc.stdout
    assert read_head_tensors(tmp_path / "model.head.safetensors") is not None
