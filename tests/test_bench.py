"""The benchmark's fast paths give the baselines' values; ``heatmapnet bench --json`` writes its keys.

Speed goals are checked by running the benchmark, never here: these tests only compare values.
"""
import json

import numpy as np
import pytest
import torch

from heatmapnet import bench
from heatmapnet.cli import main as cli_main
from heatmapnet.decode import decode_keypoints
from heatmapnet.losses import DistanceAwareFocalLoss, _FusedDistanceAwareFocal, distance_aware_focal_loss_elementwise
from heatmapnet.targets import _window_groups, render_heatmaps_batched


# ----------------------------------------------------------------------------------------------
# targets
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("exact_peak", [False, True])
def test_centernet_drawing_loop_and_batched_renderer_draw_the_same_maps(exact_peak, cpu_path):
    # The loop evaluates our definition (sub-pixel centre, 3-sigma cut, optional exact peak), so the
    # maps agree everywhere; CenterNet's own drawing would differ by its integer centres and square
    # windows (see centernet_style_targets).
    points, sigmas = bench.crowd_scene(3, 4, 17, 40, seed=1)
    points[0, 0, :3] = [[-0.6, 5.0], [39.4, 39.4], [12.0, -0.4]]  # off the map, on its last pixel, on its edge
    expected = bench.centernet_style_targets(points, sigmas, 17, (40, 40), exact_peak=exact_peak)
    ours = render_heatmaps_batched(torch.tensor(points.reshape(3, -1, 2)), torch.arange(17).repeat(4).expand(3, -1),
                                   torch.tensor(np.repeat(sigmas, 17, axis=1)), 17, (40, 40), exact_peak=exact_peak)
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-6)
    assert ours.shape == (3, 17, 40, 40) and int((ours == 1.0).sum()) == (int((expected == 1.0).sum()))


def test_window_groups_cover_every_width_without_much_wider_windows():
    widths = torch.tensor([3, 4, 4, 5, 9, 30])
    caps = _window_groups(widths)
    assert caps == sorted(caps) and caps[-1] == 30
    for width in widths.tolist():
        cap = min(c for c in caps if c >= width)
        assert (2 * cap + 1) ** 2 <= 1.3 * (2 * width + 1) ** 2


# ----------------------------------------------------------------------------------------------
# the focal loss
# ----------------------------------------------------------------------------------------------
def test_fused_focal_loss_equals_centernet_form_within_the_clamp():
    # logits within +-9 keep CenterNet's clamp of the sigmoid at [1e-4, 1 - 1e-4] inactive;
    # (2, 8, 48, 64) spans two chunks of the fused sweep
    logits, target = bench.focal_inputs((2, 8, 48, 64), torch.device("cpu"), seed=3)
    ours_x, base_x = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ours = DistanceAwareFocalLoss()(ours_x, target)
    base = bench.centernet_focal_loss(base_x, target)
    assert ours.item() == pytest.approx(base.item(), rel=1e-5)
    ours.backward()
    base.backward()
    torch.testing.assert_close(ours_x.grad, base_x.grad, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("alpha, beta", [(2.0, 4.0), (1.5, 3.0), (3.0, 2.5)])
@pytest.mark.parametrize("with_mask", [False, True])
def test_closed_form_gradient_equals_autograd_of_the_plain_formula_in_float64(alpha, beta, with_mask):
    generator = torch.Generator().manual_seed(5)
    shape = (2, 5, 64, 72)  # 46,080 elements: two chunks
    logits = (torch.randn(shape, generator=generator, dtype=torch.float64) * 6).clamp(-100, 100)
    logits[0, 0, 0, :4] = torch.tensor([-100.0, 100.0, -100.0, 100.0], dtype=torch.float64)
    target = torch.rand(shape, generator=generator, dtype=torch.float64) ** 6
    target[target > 0.95] = 1.0
    target[0, 0, 0, :4] = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    mask = (torch.rand(shape[:2], generator=generator) < 0.3)[:, :, None, None] if with_mask else None

    fused_x = logits.clone().requires_grad_()
    fused = DistanceAwareFocalLoss(alpha, beta)(fused_x, target, mask)
    fused.backward()
    plain_x = logits.clone().requires_grad_()
    elementwise = distance_aware_focal_loss_elementwise(plain_x, target, alpha, beta)
    positive = target == 1
    if mask is not None:
        keep = (~mask).expand(shape)
        elementwise = elementwise * keep
        positive = positive & keep
    plain = elementwise.sum() / positive.sum().clamp_min(1)
    plain.backward()
    assert fused.item() == pytest.approx(plain.item(), rel=1e-12)
    torch.testing.assert_close(fused_x.grad, plain_x.grad, rtol=1e-10, atol=1e-14)
    assert torch.isfinite(fused_x.grad).all()


def test_fused_focal_loss_passes_gradcheck():
    generator = torch.Generator().manual_seed(6)
    logits = (torch.randn(2, 3, 5, 5, generator=generator, dtype=torch.float64) * 3).requires_grad_()
    target = torch.rand(2, 3, 5, 5, generator=generator, dtype=torch.float64) ** 3
    target[target > 0.8] = 1.0
    keep = torch.rand(2, 3, 5, 5, generator=generator) > 0.2
    def loss(x):
        return _FusedDistanceAwareFocal.apply(x, target, keep, 2.0, 4.0, True)

    assert torch.autograd.gradcheck(loss, (logits,))


def test_fused_focal_loss_without_gradient_and_with_retained_graph():
    logits, target = bench.focal_inputs((1, 3, 16, 16), torch.device("cpu"), seed=7)
    with torch.no_grad():
        value = DistanceAwareFocalLoss()(logits, target)
    x = logits.clone().requires_grad_()
    loss = DistanceAwareFocalLoss()(x, target)
    loss.backward(retain_graph=True)
    first = x.grad.clone()
    loss.backward()  # a second pass through the same graph accumulates the same gradient again
    torch.testing.assert_close(x.grad, 2 * first)
    assert loss.item() == value.item()


# ----------------------------------------------------------------------------------------------
# decoding
# ----------------------------------------------------------------------------------------------
def test_hrnet_quarter_loop_and_decode_keypoints_give_the_same_coordinates():
    # peaks at least 3 pixels from the border: HRNet skips the shift in the second row/column, we do not
    maps, _ = bench.decode_inputs((3, 17, 24, 28), seed=2)
    expected = bench.hrnet_quarter_decode(maps.numpy())
    ours = decode_keypoints(maps, refine="quarter").coordinates
    np.testing.assert_array_equal(ours.numpy(), expected)


def test_mmpose_dark_loop_and_decode_keypoints_agree_on_clean_gaussians():
    # Without the blur (whose padding and kernel extent differ) both Taylor steps are exact on a
    # log-quadratic: mmpose's stride-2 Hessian through the centre, ours from the eight neighbours.
    generator = torch.Generator().manual_seed(4)
    points = 4 + torch.rand(2, 17, 2, generator=generator) * 24
    maps = render_heatmaps_batched(points, torch.arange(17).expand(2, -1), 1.5, 17, (32, 32), exact_peak=False)
    expected = bench.mmpose_dark_decode(maps.numpy(), blur_kernel=None)
    ours = decode_keypoints(maps, refine="dark").coordinates
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-4)
    np.testing.assert_allclose(ours.numpy(), points.numpy(), atol=1e-3)


# ----------------------------------------------------------------------------------------------
# the command
# ----------------------------------------------------------------------------------------------
def test_bench_quick_json_has_the_documented_keys(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HEATMAPNET_DATA", str(tmp_path / "no-data"))
    out = tmp_path / "bench.json"
    assert cli_main(["bench", "--quick", "--repeats", "1", "--json", str(out), "--cases", "targets",
                     "focal_loss", "decode_quarter", "decode_dark", "data_loader", "train_step"]) == 0
    cases = json.loads(out.read_text())["cases"]
    names = [case["name"] for case in cases]
    assert names[:6] == ["targets", "focal_loss", "decode_quarter", "decode_dark", "data_loader", "train_step"]
    for case in cases:
        assert {"name", "time_ratio", "memory_ratio", "goal", "met", "ours_ms", "baseline_ms", "skipped"} <= set(case)
    measured = {case["name"]: case for case in cases if not case["skipped"]}
    assert set(measured) == {"targets", "focal_loss", "decode_quarter", "decode_dark"}
    for case in measured.values():
        assert case["time_ratio"] > 0 and case["memory_ratio"] > 0 and isinstance(case["met"], bool)
        assert case["time_ratio"] == pytest.approx(case["ours_ms"] / case["baseline_ms"])
    assert measured["targets"]["max_abs_difference"] < 1e-6
    assert measured["focal_loss"]["value_relative_difference"] < 1e-5
    assert measured["decode_quarter"]["max_coordinate_difference"] == 0.0
    skipped = {case["name"]: case["skipped"] for case in cases if case["skipped"]}
    assert "no ytf68 or lsp_extended" in skipped["data_loader"]
    if not torch.cuda.is_available():
        assert "CUDA" in skipped["train_step"] and "is_available" in skipped["cuda"]
    table = capsys.readouterr().out
    assert "time_ratio <= 0.25" in table and "skipped:" in table


def test_peak_memory_counts_what_a_call_allocates():
    size = 1 << 22  # 4 MiB of float32 through torch, then 4 MiB through numpy
    torch_bytes = bench.peak_bytes(lambda: torch.ones(size // 4), torch.device("cpu"))
    numpy_bytes = bench.peak_bytes(lambda: np.ones(size // 4, dtype=np.float32), torch.device("cpu"))
    assert size <= torch_bytes < 1.1 * size and size <= numpy_bytes < 1.1 * size
