"""One patch object serving several device copies of a model at once (issue 13).

Newer ComfyUI's MultiGPU nodes clone a model per device and sample the copies in a thread pool; the
clones share model_options objects (``deepcopy_list_dict``, PR #12382), so one ``CrossAttentionPatch``
is called from two threads, on two devices, while the host moves it with ``.to(device)``. Here the two
"devices" are the CPU in two dtypes plus the meta device, and a third thread keeps moving the patch.
"""

from __future__ import annotations

import sys
import threading

import torch

from ipadapter_core.attention import CrossAttentionPatch, current_sigma
from ipadapter_core.device_cache import DeviceCache
from tests.core.test_attention import (
    OUT,
    adapter,  # noqa: F401  (the shared fixture)
    block_inputs,
    make_app,
)

ROUNDS = 150


def _masked_patch(adapter):  # noqa: F811
    mask = torch.zeros(1, 16, 16)
    mask[:, :, :8] = 1.0
    patch = CrossAttentionPatch(OUT.key).stacked(make_app(adapter, 0.8, mask=mask, sigma_start=9.0, sigma_end=1.0))
    few = lambda q, extra, heads, tokens: True  # noqa: E731  (a second, few-token adapter on the same site)
    return CrossAttentionPatch(OUT.key, few_tokens=few).stacked(patch.applications[0]).stacked(
        make_app(adapter, 0.5)).stacked(make_app(adapter, 0.3))


def _run_threads(targets: list) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(len(targets))

    def wrap(fn):
        def run():
            start.wait()
            try:
                fn()
            except BaseException as error:  # noqa: BLE001  (reported by the test)
                errors.append(error)
        return run

    threads = [threading.Thread(target=wrap(fn)) for fn in targets]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows: races show up
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        sys.setswitchinterval(interval)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return errors


def test_one_patch_called_from_two_threads_on_two_devices_while_the_host_moves_it(adapter):  # noqa: F811
    patch = _masked_patch(adapter)
    q32, k32, v32, extra32 = block_inputs(OUT, [1, 0], seed=5)
    q64, k64, v64 = (t.double() for t in (q32, k32, v32))
    extra64 = dict(extra32, cond_or_uncond=[0, 1])  # another batch layout as well
    qm, km, vm = (t.to("meta") for t in (q32, k32, v32))
    extram = dict(extra32, sigmas=torch.full((4,), 5.0, device="meta"))
    want32 = patch(q32, k32, v32, dict(extra32))
    want64 = patch(q64, k64, v64, dict(extra64))
    patch.to(torch.device("cpu"))
    got32, got64, shapes = [], [], []

    def cpu_fp32():
        for _ in range(ROUNDS):
            got32.append(patch(q32, k32, v32, dict(extra32)))

    def cpu_fp64():
        for _ in range(ROUNDS):
            got64.append(patch(q64, k64, v64, dict(extra64)))

    def meta():
        for _ in range(ROUNDS):
            shapes.append(patch(qm, km, vm, dict(extram)).shape)

    def host_moves():
        for i in range(ROUNDS):
            assert patch.to(torch.device("meta" if i % 2 else "cpu")) is patch

    errors = _run_threads([cpu_fp32, cpu_fp64, meta, host_moves])
    assert not errors, f"{len(errors)} thread(s) failed, first: {errors[0]!r}"
    assert len(got32) == len(got64) == len(shapes) == ROUNDS
    assert all(torch.equal(out, want32) for out in got32), "the fp32 device copy got another copy's result"
    assert all(torch.equal(out, want64) for out in got64), "the fp64 device copy got another copy's result"
    assert all(shape == q32.shape for shape in shapes)


def test_moving_to_one_gpu_keeps_the_other_gpus_entries():
    """``to(cuda:1)`` (the second device copy loading) must not drop what ``cuda:0`` is sampling with."""
    cache = DeviceCache(device_at=0)
    for device in ("cpu", "cuda:0"):
        cache.get((torch.device(device),), lambda: object())
    cache.moved_to(torch.device("cuda:1"))
    assert [key[0] for key in cache] == [torch.device("cuda:0")]  # the CPU copy goes, cuda:0's stays
    cache.moved_to("cpu")  # offloaded: every GPU copy goes
    assert len(cache) == 0


def test_two_threads_building_one_entry_see_one_value():
    cache = DeviceCache(device_at=0)
    made, seen = [], []
    gate = threading.Barrier(2)

    def make():
        gate.wait()  # both threads are inside make() at once
        made.append(object())
        return made[-1]

    errors = _run_threads([lambda: seen.append(cache.get(("cpu",), make))] * 2)
    assert not errors and len(made) == 2, "both threads should have built the entry"
    assert seen[0] is seen[1] is cache.get(("cpu",), make), "the two threads saw different cached values"


def test_sigma_reads_from_two_threads_never_mix():
    """Each thread's UNet call reads its own sigma (the memo is one tuple, replaced whole).

    Like a UNet call, every thread asks for the same sigmas tensor many times in a row (once per site).
    """
    wrong: list = []

    def reader(base: float):
        sigmas = [torch.full((2,), base + i) for i in range(50)]

        def run():
            for s in sigmas:
                for _ in range(40):
                    if current_sigma(s) != float(s[0]):
                        wrong.append(float(s[0]))
        return run

    errors = _run_threads([reader(0.0), reader(1000.0)])
    assert not errors and not wrong, f"{len(wrong)} sigma reads returned another thread's value"
