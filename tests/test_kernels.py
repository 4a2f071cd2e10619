"""The C kernels and their Python wrappers refuse what they cannot compute, before writing anything:
sizes beyond memory, buffers of other item types, channels out of range, and sigmas the two
drawing paths (C and PyTorch) would compute differently."""
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from heatmapnet import decode
from heatmapnet.decode import decode_keypoints
from heatmapnet.targets import splat_gaussians, usable_sigmas

FLOAT32_TINY = float(np.finfo(np.float32).tiny)  # 2^-126, the smallest normal float32


def _run_kernel_call(kernels, call: str) -> subprocess.CompletedProcess:
    """``call`` (Python using ``k``, the kernels module, and ``np``) in a fresh interpreter that
    loads the same kernels file, so that a crash of the process fails this test only."""
    code = ("import importlib.machinery, importlib.util, numpy as np\n"
            f"loader = importlib.machinery.ExtensionFileLoader('heatmapnet._kernels', {kernels.__file__!r})\n"
            "k = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))\n"
            "loader.exec_module(k)\n"
            "try:\n"
            f"    {call}\n"
            "    print('accepted')\n"
            "except ValueError as error:\n"
            "    print('ValueError:', error)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


# ----------------------------------------------------------------------------------------------
# sizes whose product overflows (these crashed the process: SIGFPE, SIGSEGV)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, error", [
    # 2^31 x 2^31 float32 maps are 2^64 bytes, which wrapped to 0 and divided by it
    ("k.max_gaussians(np.zeros(16, np.float32), 2 ** 31, 2 ** 31, np.zeros((1, 2), np.float32), np.zeros(1, np.int64), "
     "np.ones(1, np.float32), np.ones(1, bool), 3.0, 0.011, True)",
     "ValueError: maps: height and width must be >= 1 and a map fit in memory, got 2147483648 x 2147483648"),
    # 4 x (2^62 + 4) pixels = 2^64 + 16, which wrapped to the 16 values given; rows were then read 2^62 floats apart
    ("k.blurred_dark_points(np.ones(16, np.float32), 4, 2 ** 62 + 4, np.array([5]), "
     "np.array([0.25, 0.5, 0.25], np.float32), 1e-10, np.empty((1, 2), np.float32), np.empty(1, np.uint8))",
     "ValueError: maps: 1 maps of 4 x 4611686018427387908 are more values than memory can address"),
], ids=["max_gaussians", "blurred_dark_points"])
def test_a_kernel_refuses_maps_whose_size_overflows(c_kernels, call, error):
    done = _run_kernel_call(c_kernels, call)
    assert done.returncode == 0, f"the process died ({done.returncode}): {done.stderr[-300:]}"
    assert done.stdout.strip() == error


def test_splat_gaussians_refuses_maps_beyond_memory_before_allocating():
    with pytest.raises(ValueError, match=r"^splat_gaussians: 1099511627776 float32 maps of 1048576 x 1048576 are more "
                                         r"bytes than memory can address$"):
        splat_gaussians(torch.zeros(0, 2), torch.zeros(0, dtype=torch.int64), torch.zeros(0),
                        torch.zeros(0, dtype=torch.bool), 2 ** 40, (2 ** 20, 2 ** 20))


# ----------------------------------------------------------------------------------------------
# item types: a buffer of the right byte length but other items is refused, not reinterpreted
# ----------------------------------------------------------------------------------------------
def test_max_gaussians_refuses_a_float64_map_of_the_right_byte_length(c_kernels):
    maps = np.zeros((1, 8, 4), np.float64)  # 256 bytes: one 8 x 8 float32 map's worth
    with pytest.raises(ValueError, match=r"^maps: expected float32 items, got format 'd' of 8 bytes each$"):
        c_kernels.max_gaussians(maps, 8, 8, np.array([[3.0, 3.0]], np.float32), np.array([0]), np.ones(1, np.float32),
                                np.ones(1, bool), 3.0, 0.011, True)
    assert not maps.any()  # nothing written (it was: float32 bit patterns in a float64 array)


def test_max_gaussians_refuses_int32_channels_and_float64_points_of_the_right_byte_length(c_kernels):
    maps = np.zeros((4, 8, 8), np.float32)
    points = np.array([[3.0, 3.0], [5.0, 5.0]], np.float32)
    sigmas, draw = np.ones(2, np.float32), np.ones(2, bool)
    with pytest.raises(ValueError, match=r"^channels: expected int64 items, got format 'i' of 4 bytes each$"):
        c_kernels.max_gaussians(maps, 8, 8, points, np.array([0, 0, 1, 0], np.int32), sigmas, draw, 3.0, 0.011, True)
    with pytest.raises(ValueError, match=r"^points: expected float32 items, got format 'd' of 8 bytes each$"):
        c_kernels.max_gaussians(maps, 8, 8, np.array([3.0, 5.0]), np.array([0, 1]), sigmas, draw, 3.0, 0.011, True)
    assert not maps.any()


def test_the_decoding_kernels_refuse_float64_maps_of_the_right_byte_length(c_kernels):
    maps = np.zeros((1, 4, 5), np.float64)  # the bytes of two 4 x 5 float32 maps
    with pytest.raises(ValueError, match=r"^maps: expected float32 items, got format 'd'"):
        c_kernels.top_peaks(maps, 4, 5, 2, 0, 2, 3, 0.5, np.empty((1, 2, 3), np.float32), np.empty((1, 2, 3), np.int64))
    with pytest.raises(ValueError, match=r"^maps: expected float32 items, got format 'd'"):
        c_kernels.blurred_dark_points(maps, 4, 5, np.array([0, 1]), np.array([0.25, 0.5, 0.25], np.float32), 1e-10,
                                      np.empty((2, 2), np.float32), np.empty(2, np.uint8))


@pytest.mark.parametrize("name, dtype, shape", [("points", torch.float64, (2, 2)), ("channels", torch.int32, (2,)),
                                                ("sigmas", torch.float64, (2,)), ("draw", torch.uint8, (2,)),
                                                ("sigmas", torch.float32, (3,))])
def test_splat_gaussians_refuses_other_dtypes_and_shapes_on_both_paths(name, dtype, shape, cpu_path):
    arguments = {"points": torch.tensor([[2.0, 2.0], [5.0, 5.0]]), "channels": torch.tensor([0, 1]),
                 "sigmas": torch.ones(2), "draw": torch.ones(2, dtype=torch.bool)}
    arguments[name] = torch.ones(shape, dtype=dtype)
    with pytest.raises(ValueError, match=rf"^splat_gaussians: {name} must be .* for N = 2 points, got "
                                         rf"{str(dtype)[6:]} of shape \({shape[0]},"):
        splat_gaussians(*arguments.values(), 2, (8, 8))


# ----------------------------------------------------------------------------------------------
# channels: every one checked before anything is drawn
# ----------------------------------------------------------------------------------------------
def test_the_c_kernel_checks_every_channel_before_drawing_any_point(c_kernels):
    maps = np.zeros((2, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"^channels\[2\] must lie in \[0, 2\), got 7; nothing was drawn$"):
        c_kernels.max_gaussians(maps, 8, 8, np.ones((3, 2), np.float32), np.array([0, 1, 7]), np.ones(3, np.float32),
                                np.ones(3, bool), 3.0, 0.011, True)
    assert not maps.any()  # the first two points were drawn before the third was refused


def test_splat_gaussians_names_the_first_channel_out_of_range_on_both_paths(cpu_path):
    points = torch.tensor([[2.0, 2.0], [5.0, 5.0], [1.0, 1.0]])
    with pytest.raises(ValueError,
                       match=r"^splat_gaussians: channels\[1\] is -1, outside \[0, 2\); nothing was drawn$"):
        splat_gaussians(points, torch.tensor([0, -1, 2]), torch.ones(3), torch.ones(3, dtype=torch.bool), 2, (8, 8))


# ----------------------------------------------------------------------------------------------
# sigmas: one rule, checked before either path draws
# ----------------------------------------------------------------------------------------------
def test_usable_sigmas_are_finite_positive_with_a_normal_float32_square():
    smallest = math.sqrt(FLOAT32_TINY)  # 1.0842e-19: squares to exactly 2^-126
    sigmas = torch.tensor([math.inf, -math.inf, math.nan, 0.0, -1.0, 1e-30, 1.0e-19, smallest, 0.5, 1e30])
    assert usable_sigmas(sigmas).tolist() == [False, False, False, False, False, False, False, True, True, True]


@pytest.mark.parametrize("sigma", [math.inf, math.nan, 0.0, -1.0, 1e-30])
def test_an_unusable_sigma_is_refused_alike_by_both_paths(sigma, cpu_path):
    points = torch.tensor([[2.0, 2.0], [5.0, 5.0]])
    sigmas = torch.tensor([1.0, sigma])
    text = f"{float(torch.tensor(sigma)):g}"  # as float32: 1e-30 prints as 1e-30
    with pytest.raises(ValueError, match=rf"^splat_gaussians: sigmas\[1\] is {text} for the point \(5, 5\) of "
                                         r"channel 1: a drawn Gaussian's sigma must be finite and > 0, its square a "
                                         r"normal float32 \(sigma >= 1.1e-19\); nothing was drawn$"):
        splat_gaussians(points, torch.tensor([0, 1]), sigmas, torch.ones(2, dtype=torch.bool), 2, (8, 8))


def test_points_that_are_not_drawn_may_carry_any_sigma(cpu_path):
    points = torch.tensor([[2.0, 2.0], [5.0, 5.0]])
    maps = splat_gaussians(points, torch.tensor([0, 1]), torch.tensor([1.0, math.nan]), torch.tensor([True, False]),
                           2, (8, 8), exact_peak=False)
    assert maps[0, 2, 2].item() == 1.0 and maps[0, 2, 3].item() == pytest.approx(math.exp(-0.5), abs=1e-7)
    assert not maps[1].any()


def test_both_paths_draw_the_extreme_usable_sigmas_alike(cpu_path):
    # the smallest usable sigma: exp(-d^2 / 2 sigma^2) is 1 at d = 0 and 0 at any other pixel;
    # a huge one: 2 sigma^2 is inf in float32, so every pixel of the map gets exp(-0) = 1
    points = torch.tensor([[2.0, 2.0], [5.3, 5.0]])
    sigmas = torch.tensor([math.sqrt(FLOAT32_TINY), 1e30])
    maps = splat_gaussians(points, torch.tensor([0, 1]), sigmas, torch.ones(2, dtype=torch.bool), 2, (8, 8),
                           exact_peak=False)
    assert maps[0, 2, 2].item() == 1.0 and maps[0].sum().item() == 1.0
    assert torch.equal(maps[1], torch.ones(8, 8))


def test_the_c_kernel_itself_refuses_an_infinite_sigma_before_drawing(c_kernels):
    maps = np.zeros((1, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"^sigmas\[1\] is inf: a drawn Gaussian's sigma must be finite and > 0"):
        c_kernels.max_gaussians(maps, 8, 8, np.ones((2, 2), np.float32), np.array([0, 0]),
                                np.array([1.0, np.inf], np.float32), np.ones(2, bool), 3.0, 0.011, True)
    assert not maps.any()  # it used to fill the whole map with 1


@pytest.mark.parametrize("sigma", [math.inf, math.nan, -1.0, 1e-30])
def test_an_unusable_blur_sigma_is_refused_alike_by_both_decoding_paths(sigma, cpu_path):
    maps = torch.rand(1, 2, 12, 12, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=rf"^DARK's blur sigma is {sigma:g}: it must be finite and > 0, its square a "
                                         r"normal float32 \(sigma >= 1.1e-19\)$"):
        decode_keypoints(maps, refine="dark", blur_sigma=sigma)
    with pytest.raises(ValueError, match="DARK's blur sigma"):
        decode.gaussian_blur(maps, sigma)


# ----------------------------------------------------------------------------------------------
# the switch (heatmapnet.kernels.use_kernels)
# ----------------------------------------------------------------------------------------------
def test_use_kernels_turns_every_fast_path_off_and_a_with_block_restores_it(c_kernels, monkeypatch):
    from heatmapnet import bottomup, kernels, targets

    calls = []
    for name in ("max_gaussians", "blurred_dark_points", "top_peaks"):  # record each kernel call, then run it
        original = getattr(c_kernels, name)
        monkeypatch.setattr(c_kernels, name, lambda *args, _f=original, _n=name: calls.append(_n) or _f(*args))

    def run_all():
        calls.clear()
        maps = targets.render_heatmaps(torch.tensor([[5.3, 6.1]]), torch.tensor([0]), 1.5, 1, (16, 16))
        decode_keypoints(maps[None], refine="dark", blur_sigma=1.0)
        bottomup.top_peaks(maps[None], slice(0, 1), 2)
        return sorted(calls)

    everything = ["blurred_dark_points", "max_gaussians", "top_peaks"]
    assert run_all() == everything
    with kernels.use_kernels(False):
        assert kernels.active() is None and run_all() == []
        with kernels.use_kernels(True):
            assert run_all() == everything
        assert run_all() == []
    assert kernels.active() is c_kernels and run_all() == everything
    kernels.use_kernels(False)  # a plain call: off from now on
    try:
        assert run_all() == []
    finally:
        kernels.use_kernels(True)
