"""Structured inputs of the apply variants: Mad Scientist layer weights and regional params."""

from __future__ import annotations

import pytest
import torch

from ipadapter_core.errors import IPAdapterError
from ipadapter_core.parsing import layer_weights, params_entries


def test_layer_weights_parse_and_empty_means_the_weight_type():
    assert layer_weights("0:0.5,\n 6: 1", range(16)) == {0: 0.5, 6: 1.0}
    assert layer_weights("", range(16)) is None and layer_weights("  \n", range(16)) is None


def test_layer_weights_name_layers_the_model_lacks():
    with pytest.raises(IPAdapterError, match="Layer 11, 20 does not exist") as err:
        layer_weights("3:1, 11:1, 20:0.5", range(11))
    assert "0..10" in str(err.value) and err.value.input == "layer_weights"


IMAGES = {name: torch.full((1, 2, 2, 3), float(i)) for i, name in enumerate("abc")}  # regions' images are IMAGEs


def _params(n: int = 2, **changes):
    params = {"image": [IMAGES["a"]] * n, "attn_mask": [None] * n, "weight": [1.0] * n, "weight_type": ["linear"] * n,
              "start_at": [0.0] * n, "end_at": [1.0] * n}
    return {**params, **changes}


def test_params_become_one_entry_per_region_skipping_regions_without_image():
    entries = params_entries(_params(3, image=[IMAGES["a"], None, IMAGES["c"]], weight=[0.1, 0.2, 0.3]))
    assert [(e.image, e.weight) for e in entries] == [(IMAGES["a"], 0.1), (IMAGES["c"], 0.3)]


@pytest.mark.parametrize("params, message", [
    ({"image": [IMAGES["a"]]}, "not regional params"),
    ("text", "not regional params"),
    (_params(2, weight=[1.0]), "different lengths"),
    (_params(1, image=[None]), "no image"),
])
def test_malformed_params_are_explained(params, message):
    with pytest.raises(IPAdapterError, match=message) as err:
        params_entries(params)
    assert err.value.input == "ipadapter_params" and err.value.fix
