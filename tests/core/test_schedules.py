"""IPAdapter Weights schedules (incumbent.md §4.10), prompt schedules and regional params lists.

Expected values are worked out by hand from the spec's formulas.
"""

from __future__ import annotations

import copy
import random

import pytest
import torch

from ipadapter_core import schedules
from ipadapter_core.errors import IPAdapterError
from ipadapter_core.schedules import Strategy


def frames_of(images: torch.Tensor) -> list[int]:
    """Image i of the test batches is filled with the value i; read the index back per frame."""
    return [int(round(v)) for v in images[:, 0, 0, 0].tolist()]


def batch(n: int) -> torch.Tensor:
    return torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 2, 2, 3).clone()


@pytest.mark.parametrize(
    "timing,expected",
    [
        ("linear", [0.0, 0.25, 0.5, 0.75, 1.0]),
        # (1 - cos(pi i/4)) / 2
        ("ease_in_out", [0.0, 0.1464466, 0.5, 0.8535534, 1.0]),
        # incumbent naming kept: ease_in = sin(pi/2 * i/4) (fast start) ...
        ("ease_in", [0.0, 0.3826834, 0.7071068, 0.9238795, 1.0]),
        # ... and ease_out = 1 - cos(pi/2 * i/4) (slow start)
        ("ease_out", [0.0, 0.0761205, 0.2928932, 0.6173166, 1.0]),
    ],
)
def test_timing_curves(timing, expected):
    assert schedules.curve(Strategy("0.0, 1.0", timing, frames=5)) == pytest.approx(expected, abs=1e-6)


def test_default_ramp_and_invert():
    weights, inverted, total, image_1, image_2 = schedules.schedule(Strategy("1.0, 0.0", "linear", frames=5))
    assert weights == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])
    assert inverted == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert total == 5 and image_1 is None and image_2 is None


def test_start_and_end_frames():
    # 1 frame of start, a 3-frame ramp (frames 1..3), then end until frame 6
    s = Strategy("0, 1", "linear", frames=6, start_frame=1, end_frame=4)
    assert schedules.curve(s) == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0, 1.0])


def test_one_frame_transition_does_not_divide_by_zero():
    s = Strategy("0, 1", "linear", frames=4, start_frame=2, end_frame=3)  # incumbent: ZeroDivisionError
    assert schedules.curve(s) == pytest.approx([0.0, 0.0, 1.0, 1.0])
    for timing in ("ease_in_out", "ease_in", "ease_out"):
        assert schedules.curve(Strategy("0, 1", timing, frames=4, start_frame=2, end_frame=3))[2] == 1.0


def test_empty_transition_does_not_crash():
    s = Strategy("0.2, 0.8", "linear", frames=3, start_frame=0, end_frame=0)  # incumbent: IndexError
    assert schedules.curve(s) == pytest.approx([0.8, 0.8, 0.8])


def test_frames_at_least_two_and_default_range():
    assert schedules.curve(Strategy("", "linear", frames=0)) == [0.0, 1.0]


def test_custom_list_and_parse_errors():
    assert schedules.curve(Strategy("0.2\n0.5, 1", "custom")) == [0.2, 0.5, 1.0]
    assert schedules.curve(Strategy(" , ", "custom")) == [0.0]
    with pytest.raises(IPAdapterError) as err:
        schedules.curve(Strategy("1, abc", "linear"))
    assert err.value.input == "weights" and "'abc'" in str(err.value)


def test_random_is_repeatable_and_local():
    state = random.getstate()
    s = Strategy("0.2, 0.6", "random", frames=20)
    first = schedules.curve(s)
    assert random.getstate() == state
    assert first == schedules.curve(s)
    assert all(0.2 <= w <= 0.6 for w in first) and len(set(first)) > 10
    assert first != schedules.curve(Strategy("0.2, 0.6", "random", frames=20, method="shift batches"))


def test_invert_is_the_cross_fade_partner():
    assert schedules.invert([0.2, 0.8, 0.5]) == pytest.approx([0.8, 0.2, 0.5])
    weights, inverted, *_ = schedules.schedule(Strategy("1, 0", "ease_in", frames=4))
    assert [w + v for w, v in zip(weights, inverted, strict=True)] == pytest.approx([1.0] * 4)


def test_full_batch():
    weights, inverted, total, image_1, image_2 = schedules.schedule(Strategy("1, 0", frames=2), batch(3))
    assert weights == [1.0, 0.0] * 3 and total == 6
    assert frames_of(image_1) == [0, 0, 1, 1, 2, 2] and image_2 is None


def test_shift_batches():
    weights, _, total, image_1, image_2 = schedules.schedule(Strategy("1, 0", frames=2, method="shift batches"),
                                                             batch(3))
    assert weights == [1.0, 0.0, 1.0, 0.0] and total == 4
    assert frames_of(image_1) == [0, 0, 1, 1] and frames_of(image_2) == [1, 1, 2, 2]


def test_alternate_batches_even_and_odd():
    s = Strategy("1, 0", frames=3, method="alternate batches")
    weights, _, total, image_1, image_2 = schedules.schedule(s, batch(4))
    # blocks: 0->1 ramp, 2->1 inverted ramp, 2->3 ramp
    assert weights == pytest.approx([1, 0.5, 0, 0, 0.5, 1, 1, 0.5, 0]) and total == 9
    assert frames_of(image_1) == [0] * 3 + [2] * 6
    assert frames_of(image_2) == [1] * 6 + [3] * 3
    weights, _, _, image_1, image_2 = schedules.schedule(s, batch(3))
    assert weights == pytest.approx([1, 0.5, 0, 0, 0.5, 1])
    assert frames_of(image_1) == [0] * 3 + [2] * 3 and frames_of(image_2) == [1] * 6


def test_starting_and_ending_frames_pad_weights_and_images():
    s = Strategy("1, 0", frames=2, method="shift batches", add_starting_frames=2, add_ending_frames=1)
    weights, inverted, total, image_1, image_2 = schedules.schedule(s, batch(3))
    assert weights == [1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0] and total == 7
    assert frames_of(image_1) == [0, 0, 0, 0, 1, 1, 2]
    assert frames_of(image_2) == [0, 0, 1, 1, 2, 2, 2]
    assert inverted == [0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0]


def test_cross_fades_need_two_images():
    for method in ("shift batches", "alternate batches"):
        with pytest.raises(IPAdapterError) as err:
            schedules.schedule(Strategy(method=method), batch(1))
        assert err.value.input == "image" and "2 images" in str(err.value)


def test_prompt_schedule():
    s = Strategy("1, 0", frames=4, frame_count=3)
    expected = '"0": "a cat",\n"4": "b \\"dog\\"",\n"8": "b \\"dog\\"",\n'
    assert schedules.prompt_schedule(s, "a cat\n\nb \"dog\"") == expected
    padded = Strategy("1, 0", frames=4, frame_count=2, add_starting_frames=2, add_ending_frames=1)
    assert schedules.prompt_schedule(padded, "a\nb\nc") == '"0": "a",\n"2": "a",\n"6": "b",\n"10": "b",\n'
    # frames=0 means a 2-frame ramp: prompts follow the real block length (the incumbent put all on frame 0)
    assert schedules.prompt_schedule(Strategy("1, 0", frames=0, frame_count=2), "a\nb") == '"0": "a",\n"2": "b",\n'
    assert schedules.prompt_schedule(Strategy(frame_count=0), "a") == ""


def test_strategy_round_trip_and_refusal():
    s = Strategy("0.5, 1", "ease_in", 8, 1, 7, 2, 3, "shift batches", 4)
    assert Strategy.from_dict(s.as_dict()) == s
    assert set(s.as_dict()) == {"weights", "timing", "frames", "start_frame", "end_frame", "add_starting_frames",
                                "add_ending_frames", "method", "frame_count"}
    with pytest.raises(IPAdapterError):
        Strategy.from_dict([1.0, 0.5])


def test_combine_params_concatenates_without_mutating():
    img_a, img_b = torch.zeros(1, 4, 4, 3), torch.ones(1, 4, 4, 3)
    a = schedules.regional_params(img_a, None, 1.0, "linear", 0.0, 1.0)
    b = schedules.regional_params(img_b, torch.ones(1, 4, 4), 0.5, "style transfer", 0.1, 0.9)
    b["weight_composition"] = [0.7]  # a key a newer producer may add
    a_before, b_before = copy.copy(a), copy.copy(b)
    out = schedules.combine_params(a, None, b)
    assert out["image"][0] is img_a and out["image"][1] is img_b
    assert out["attn_mask"][0] is None and out["weight"] == [1.0, 0.5]
    assert out["weight_type"] == ["linear", "style transfer"]
    assert out["start_at"] == [0.0, 0.1] and out["end_at"] == [1.0, 0.9]
    assert out["weight_composition"] == [None, 0.7]
    assert a == a_before and b == b_before and len(a["image"]) == 1
    with pytest.raises(IPAdapterError) as err:
        schedules.combine_params(a, b, None, {"image": [img_a]})
    assert err.value.input == "params_4"


def test_as_list():
    assert schedules.as_list(0.5) == [0.5]
    assert schedules.as_list([0.1, 0.2]) == [0.1, 0.2]
    assert schedules.as_list(torch.tensor([0.5, 1.0])) == [0.5, 1.0]
