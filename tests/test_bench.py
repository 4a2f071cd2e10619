"""The benchmark's fast paths against the anchors' published formulations (heatmapnet.testing.reference,
checked by hand in tests/test_reference.py) as oracles: equal where the definitions coincide, and
where heatmapnet differs by design the difference is stated and asserted, not left out.
``heatmapnet bench --json`` writes its keys.

Speed goals are checked by running the benchmark, never here: these tests only compare values.
"""
import json
import math

import numpy as np
import pytest
import torch

from heatmapnet import bench
from heatmapnet.cli import main as cli_main
from heatmapnet.decode import decode_keypoints
from heatmapnet.losses import DistanceAwareFocalLoss, distance_aware_focal_loss_elementwise
from heatmapnet.targets import render_heatmaps_batched, sigma_from_radius, window_groups
from heatmapnet.testing import crowd_scene, decode_inputs, focal_inputs, reference


# ----------------------------------------------------------------------------------------------
# targets
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("exact_peak", [False, True])
def test_renderer_equals_centernet_drawing_within_3_sigma_on_centernets_own_inputs(exact_peak, cpu_path):
    # CenterNet's inputs: points on integer pixels (it truncates every point) and sigma = (2r + 1) / 6
    # of an integer radius r. There both draw exp(-d^2 / 2 sigma^2) around the same pixel,
    # max-combined, and agree wherever CenterNet's value is >= exp(-4.5), i.e. within 3 sigma
    # (= r + 0.5) of the point that sets it. By design they differ beyond 3 sigma: CenterNet fills
    # its whole (2r + 1)^2 square, whose corners lie up to r sqrt(2) away, heatmapnet cuts there.
    points, radii = crowd_scene(3, 4, 17, 40, seed=1)
    points = np.trunc(points)
    points[0, 0, :3] = [[-1.0, 5.0], [39.0, 39.0], [12.0, 0.0]]  # off the map (both skip it), last pixel, edge
    radii[0] = [0, 5, 2, 3]  # a one-pixel target and wide ones (crowd_scene's 40-px boxes give radii 0..1)
    expected = reference.centernet_keypoint_heatmaps(points, radii, 17, (40, 40))
    sigmas = np.repeat(sigma_from_radius(radii.astype(np.float32)), 17, axis=1)
    ours = render_heatmaps_batched(torch.tensor(points.reshape(3, -1, 2)), torch.arange(17).repeat(4).expand(3, -1),
                                   torch.tensor(sigmas), 17, (40, 40), exact_peak=exact_peak).numpy()
    assert ours.shape == expected.shape == (3, 17, 40, 40)
    within = expected >= math.exp(-4.5)
    np.testing.assert_allclose(ours[within], expected[within], rtol=0, atol=1e-6)
    assert int((ours == 1.0).sum()) == int((expected == 1.0).sum())
    # the difference by design: beyond 3 sigma ours is never higher, and the square's corners
    # (here of the radius-2, -3 and -5 people) are drawn by CenterNet only, with values < exp(-4.5)
    assert (ours[~within] <= expected[~within] + 1e-7).all()
    corners = (expected > 0) & (ours == 0)
    assert corners.sum() > 0 and (expected[corners] < math.exp(-4.5)).all()


def test_centernet_truncates_a_point_to_its_pixel_where_the_renderer_centres_on_it():
    # By design: CenterNet draws (2.7, 3.2) at int() = (2, 3), its peak up to a pixel off the point;
    # heatmapnet centres the Gaussian on the sub-pixel point, its peak on the nearest pixel (3, 3).
    points = np.array([[[[2.7, 3.2]]]], np.float32)
    centernet = reference.centernet_keypoint_heatmaps(points, np.array([[2]]), 1, (8, 8))[0, 0]
    ours = render_heatmaps_batched(torch.tensor(points.reshape(1, 1, 2)), torch.zeros(1, 1, dtype=torch.long),
                                   5 / 6, 1, (8, 8), exact_peak=False)[0, 0].numpy()
    assert np.unravel_index(centernet.argmax(), centernet.shape) == (3, 2)
    assert np.unravel_index(ours.argmax(), ours.shape) == (3, 3)
    assert centernet[3, 2] == 1.0 and ours[3, 3] == pytest.approx(math.exp(-(0.3 ** 2 + 0.2 ** 2) * 18 / 25))


def test_window_groups_cover_every_width_without_much_wider_windows():
    widths = torch.tensor([3, 4, 4, 5, 9, 30])
    caps = window_groups(widths)
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
    logits, target = focal_inputs((2, 8, 48, 64), torch.device("cpu"), seed=3)
    ours_x, base_x = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ours = DistanceAwareFocalLoss()(ours_x, target)
    base = reference.centernet_focal_loss(base_x, target)
    assert ours.item() == pytest.approx(base.item(), rel=1e-5)
    ours.backward()
    base.backward()
    torch.testing.assert_close(ours_x.grad, base_x.grad, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("alpha, beta", [(2.0, 4.0), (1.5, 3.0), (3.0, 2.5)])
@pytest.mark.parametrize("with_weights", [False, True])
def test_closed_form_gradient_equals_autograd_of_the_plain_formula_in_float64(alpha, beta, with_weights):
    generator = torch.Generator().manual_seed(5)
    shape = (2, 5, 64, 72)  # 46,080 elements: two chunks
    logits = (torch.randn(shape, generator=generator, dtype=torch.float64) * 6).clamp(-100, 100)
    logits[0, 0, 0, :4] = torch.tensor([-100.0, 100.0, -100.0, 100.0], dtype=torch.float64)
    target = torch.rand(shape, generator=generator, dtype=torch.float64) ** 6
    target[target > 0.95] = 1.0
    target[0, 0, 0, :4] = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    weights = None
    if with_weights:  # (B, K) keypoint weights: about 30% of the maps 0, the others 1 or 0.5
        weights = (torch.rand(shape[:2], generator=generator) >= 0.3).to(torch.float64)
        weights[0, 1] = weights[1, 2] = 0.5

    fused_x = logits.clone().requires_grad_()
    fused = DistanceAwareFocalLoss(alpha, beta)(fused_x, target, weights)
    fused.backward()
    plain_x = logits.clone().requires_grad_()
    elementwise = distance_aware_focal_loss_elementwise(plain_x, target, alpha, beta)
    positive = target == 1
    if weights is not None:
        per_element = weights[:, :, None, None].expand(shape)
        elementwise = elementwise * per_element
        positive = positive & (per_element > 0)
    plain = elementwise.sum() / positive.sum().clamp_min(1)
    plain.backward()
    assert fused.item() == pytest.approx(plain.item(), rel=1e-12)
    torch.testing.assert_close(fused_x.grad, plain_x.grad, rtol=1e-10, atol=1e-14)
    assert torch.isfinite(fused_x.grad).all()


def test_fused_focal_loss_passes_gradcheck():
    # float64 logits and a same-shaped target: the loss takes its fused path, whose gradient is
    # written in closed form; keypoint weights with zeros mask whole maps
    generator = torch.Generator().manual_seed(6)
    logits = (torch.randn(2, 3, 5, 5, generator=generator, dtype=torch.float64) * 3).requires_grad_()
    target = torch.rand(2, 3, 5, 5, generator=generator, dtype=torch.float64) ** 3
    target[target > 0.8] = 1.0
    weights = torch.tensor([[1.0, 0.0, 0.5], [0.0, 2.0, 1.0]], dtype=torch.float64)
    criterion = DistanceAwareFocalLoss()
    fused = criterion(logits, target, weights)
    assert fused.grad_fn is not None and "Fused" in type(fused.grad_fn).__name__  # the fused path, not autograd's

    assert torch.autograd.gradcheck(lambda x: criterion(x, target, weights), (logits,))
    assert torch.autograd.gradcheck(lambda x: criterion(x, target), (logits,))


def test_fused_focal_loss_without_gradient_and_with_retained_graph():
    logits, target = focal_inputs((1, 3, 16, 16), torch.device("cpu"), seed=7)
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
def test_hrnet_quarter_loop_and_decode_keypoints_give_the_same_coordinates_away_from_the_border():
    # peaks at least 3 pixels from the border (the benchmark's maps): both apply the same offset
    maps, _ = decode_inputs((3, 17, 24, 28), seed=2)
    expected = reference.hrnet_quarter_decode(maps.numpy())
    ours = decode_keypoints(maps, refine="quarter").coordinates
    np.testing.assert_array_equal(ours.numpy(), expected)


def test_quarter_offset_against_hrnet_on_every_row_and_column():
    # One map per peak position of a 6 x 7 map; right neighbour 0.6 > left 0.3, lower 0.5 > upper
    # 0.2, so a refined peak moves by (+0.25, +0.25).
    # HRNet refines both axes only if 1 < px < W - 1 and 1 < py < H - 1 (columns 2..5, rows 2..4).
    # Ours refines each axis on its own wherever both neighbours on that axis are on the map
    # (columns 1..5 for x, rows 1..4 for y). Where HRNet refines, the two agree exactly; the
    # differences by design are asserted below, not excluded.
    height, width = 6, 7
    maps = np.zeros((height * width, 1, height, width), dtype=np.float32)
    py, px = np.divmod(np.arange(height * width), width)
    for index, (x, y) in enumerate(zip(px, py)):
        hm = maps[index, 0]
        hm[y, x] = 1.0
        for dx, dy, value in ((1, 0, 0.6), (-1, 0, 0.3), (0, 1, 0.5), (0, -1, 0.2)):
            if 0 <= x + dx < width and 0 <= y + dy < height:
                hm[y + dy, x + dx] = value
    hrnet = reference.hrnet_quarter_decode(maps)[:, 0]
    ours = decode_keypoints(torch.from_numpy(maps), refine="quarter").coordinates[:, 0].numpy()
    hrnet_refines = (px >= 2) & (px <= width - 2) & (py >= 2) & (py <= height - 2)
    np.testing.assert_array_equal(ours[hrnet_refines], hrnet[hrnet_refines])
    np.testing.assert_array_equal(hrnet[~hrnet_refines], np.stack([px, py], -1)[~hrnet_refines])
    ours_dx = np.where((px >= 1) & (px <= width - 2), 0.25, 0.0)
    ours_dy = np.where((py >= 1) & (py <= height - 2), 0.25, 0.0)
    np.testing.assert_array_equal(ours, np.stack([px + ours_dx, py + ours_dy], -1))
    # so, ours minus HRNet, peak by peak:
    difference = dict(zip(zip(px.tolist(), py.tolist()), (ours - hrnet).tolist()))
    assert difference[(1, 3)] == [0.25, 0.25]  # column 1: HRNet refuses (1 < px fails) on both axes, ours moves both
    assert difference[(3, 1)] == [0.25, 0.25]  # row 1 likewise
    assert difference[(0, 3)] == [0.0, 0.25]  # column 0: neither moves x; HRNet drops the y offset as well
    assert difference[(6, 3)] == [0.0, 0.25]  # column W - 1 likewise
    assert difference[(3, 0)] == [0.25, 0.0]  # row 0: neither moves y; HRNet drops x too
    assert difference[(5, 3)] == [0.0, 0.0]  # column W - 2: both refine (HRNet's px < W - 1 holds)
    assert difference[(4, 4)] == [0.0, 0.0]  # row H - 2: both refine
    assert difference[(0, 0)] == [0.0, 0.0]  # a corner: neither refines either axis


def test_mmpose_dark_loop_and_decode_keypoints_agree_on_clean_gaussians():
    # Without the blur (whose padding and kernel extent differ) both Taylor steps are exact on a
    # log-quadratic: mmpose's stride-2 Hessian through the centre, ours from the eight neighbours.
    generator = torch.Generator().manual_seed(4)
    points = 4 + torch.rand(2, 17, 2, generator=generator) * 24
    maps = render_heatmaps_batched(points, torch.arange(17).expand(2, -1), 1.5, 17, (32, 32), exact_peak=False)
    expected = reference.mmpose_dark_decode(maps.numpy(), blur_kernel=None)
    ours = decode_keypoints(maps, refine="dark").coordinates
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-4)
    np.testing.assert_allclose(ours.numpy(), points.numpy(), atol=1e-3)


def test_dark_against_mmpose_in_every_column_and_row():
    # Clean Gaussians (sigma 1.5, no blur) centred 0.3 px right / below a pixel in every column
    # (row 4.3) and every row (column 5.3) of a 10 x 12 map. mmpose refines only for
    # 1 < x < W - 2 and 1 < y < H - 2 (both axes at once); ours takes the 2-D step wherever the
    # 3 x 3 patch is on the map, and on the outermost columns/rows a 1-D step along the axis that
    # has room. Where mmpose refines both are exact; by design, in column or row 1 and W - 2 or
    # H - 2 ours is exact and mmpose keeps the integer pixel; on the outermost ones mmpose keeps
    # the pixel, ours keeps the border coordinate and refines the other axis (exactly, for this
    # isotropic Gaussian).
    height, width = 10, 12
    centres = [(c + 0.3, 4.3) for c in range(width)] + [(5.3, r + 0.3) for r in range(height)]
    rows, cols = np.mgrid[0:height, 0:width]
    maps = np.stack([np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * 1.5 ** 2)) for x, y in centres])
    maps = maps[:, None].astype(np.float32)
    mmpose = reference.mmpose_dark_decode(maps, blur_kernel=None)[:, 0]
    ours = decode_keypoints(torch.from_numpy(maps), refine="dark").coordinates[:, 0].numpy()
    for (x, y), theirs, mine in zip(centres, mmpose, ours):
        pixel = [math.floor(x), math.floor(y)]
        if 2 <= pixel[0] <= width - 3 and 2 <= pixel[1] <= height - 3:
            np.testing.assert_allclose(theirs, [x, y], atol=1e-4)
            np.testing.assert_allclose(mine, theirs, atol=1e-4)
        elif 1 <= pixel[0] <= width - 2 and 1 <= pixel[1] <= height - 2:  # columns/rows 1 and W-2/H-2
            np.testing.assert_array_equal(theirs, pixel)
            np.testing.assert_allclose(mine, [x, y], atol=1e-4)
        else:  # column or row 0 or W-1/H-1: a neighbour on that axis is off the map
            np.testing.assert_array_equal(theirs, pixel)
            on_edge = [pixel[0] in (0, width - 1), pixel[1] in (0, height - 1)]
            np.testing.assert_allclose(mine, np.where(on_edge, pixel, [x, y]), atol=1e-4)


# ----------------------------------------------------------------------------------------------
# bottom-up people: CenterNet's multi_pose_decode + post-processing
# ----------------------------------------------------------------------------------------------
def _hand_people_maps():
    """tests/test_reference.py's 8 x 8 multi-pose maps (3 joint types, people A and B) in
    heatmapnet's bottom-up layout, for a 32 x 32 input at stride 4."""
    from heatmapnet.bottomup import BottomUpCodec

    codec = BottomUpCodec((32, 32), 3, stride=4)
    layout = codec.layout
    maps = torch.zeros(1, layout.num_outputs, 8, 8)
    centre, offset, size = layout.centre.start, layout.centre_offset.start, layout.size.start
    joint_offsets, joints, joint_offset = layout.joint_offsets.start, layout.joints.start, layout.joint_offset.start
    maps[0, centre, 4, 3], maps[0, centre, 4, 4], maps[0, centre, 1, 6] = 0.9, 0.5, 0.4  # A, suppressed, B
    maps[0, offset:offset + 2, 4, 3] = torch.tensor([0.25, -0.25])
    maps[0, size:size + 2, 4, 3] = torch.tensor([4.0, 6.0])
    maps[0, size:size + 2, 1, 6] = torch.tensor([2.0, 4.0])
    maps[0, joint_offsets:joint_offsets + 6, 4, 3] = torch.tensor([-1.0, -2.0, 1.5, 2.0, 0.0, -1.0])
    maps[0, joint_offsets:joint_offsets + 6, 1, 6] = torch.tensor([0.5, 0.0, 0.0, 0.0, 0.0, 0.0])
    for (joint, x, y, score, sub_pixel) in ((0, 2, 3, 0.8, (0.5, 0.0)), (0, 7, 1, 0.3, (0.0, 0.0)),
                                            (1, 6, 6, 0.7, (-0.4, 0.0)), (1, 4, 5, 0.6, (0.0, -0.2)),
                                            (2, 6, 2, 0.1, (0.0, 0.0)), (2, 5, 6, 0.5, (0.0, 0.0))):
        maps[0, joints + joint, y, x] = score
        maps[0, joint_offset:joint_offset + 2, y, x] = torch.tensor(sub_pixel)
    return maps, codec


def test_ours_and_centernet_differ_on_hand_made_people_only_by_design():
    # The maps of test_reference's multi-pose test, where CenterNet gives (heatmap px) A: joints
    # (2.5, 3), (4.5, 6) regressed, (3, 3) regressed; B: (7, 1), (6, 1) and (6, 1) regressed.
    # Ours takes the nearest peak that is inside the box, >= 0.1 and within 0.3 x the longer side:
    #   A type 1: (5.6, 6) is outside (x > 5.25), (4, 4.8) inside at 1.3 <= 1.8: ours snaps to it;
    #     CenterNet takes the nearer (5.6, 6) and refuses it. By design: nearer peak outside the box.
    #   A type 2: (6, 2) outside A's box, (5, 6) inside at 3.606 > 1.8: regressed in both.
    #   B type 2: (6, 2) scores exactly 0.1 (>= 0.1 for ours, not > 0.1 for CenterNet), inside,
    #     at 1 <= 0.3 x 4: ours snaps, CenterNet keeps (6, 1). By design: score at the threshold.
    # Input px = 4 x heatmap px + 1.5 (CenterNet's post-processing given c = 16 + 1.5, s = 32).
    maps, codec = _hand_people_maps()
    ours = codec.decode(maps, max_people=2)
    rows = bench.centernet_people(maps, codec.layout, 2, np.array([17.5, 17.5], np.float32), 32.0)
    heat = torch.tensor([[[2.5, 3.0], [4.0, 4.8], [3.0, 3.0]], [[7.0, 1.0], [6.0, 1.0], [6.0, 2.0]]])
    torch.testing.assert_close(ours.keypoints[0], 4 * heat + 1.5)
    assert ours.snapped[0].tolist() == [[True, True, False], [True, False, True]]
    np.testing.assert_allclose(rows[0][:, 5:].reshape(2, 3, 2),
                               4 * np.array([[[2.5, 3.0], [4.5, 6.0], [3.0, 3.0]],
                                             [[7.0, 1.0], [6.0, 1.0], [6.0, 1.0]]]) + 1.5, atol=1e-5)
    agreement = bench.people_agreement(codec, maps, ours, rows)
    assert agreement["people"] == agreement["people_matched"] == 2
    assert agreement["max_score_difference"] == 0.0 and agreement["max_box_difference_px"] < 1e-5
    assert agreement["joints"] == 6 and agreement["joints_snapped_ours"] == 4
    assert agreement["joints_snapped_centernet"] == 2
    assert agreement["joints_differing"] == 2
    assert agreement["joints_differing_by_design_nearer_peak_outside_box"] == 1
    assert agreement["joints_differing_by_design_score_at_threshold"] == 1
    assert agreement["joints_differing_by_design_distance_limit"] == 0
    assert agreement["joints_differing_by_design_peak_beyond_centernet_top_k"] == 0
    assert agreement["joints_differing_unexplained"] == 0
    assert agreement["max_joint_difference_px"] < 1e-5
    # A type 1: |(4, 4.8) - (4.5, 6)| = 1.3 heatmap px = 5.2 input px
    assert agreement["max_joint_difference_px_by_design"] == pytest.approx(5.2, abs=1e-5)


def test_decode_people_quick_agrees_with_centernet_except_by_design(tmp_path):
    out = tmp_path / "bench.json"
    assert cli_main(["bench", "--quick", "--repeats", "1", "--json", str(out), "--device", "cpu",
                     "--cases", "decode_people"]) == 0
    (case,) = json.loads(out.read_text())["cases"]
    assert case["name"] == "decode_people" and case["goal"] == "ours_ms <= 2 x floor_ms"
    assert case["shape"] == [2, 7 + 3 * 17, 32, 32] and case["max_people"] == 16
    assert case["ours_ms"] > 0 and case["baseline_ms"] > 0 and case["floor_ms"] > 0 and isinstance(case["met"], bool)
    assert case["floor_ratio"] == pytest.approx(case["ours_ms"] / case["floor_ms"])
    # the same candidates, scores and boxes (float32 rounding of x 4 + 1.5 only)
    assert case["people"] == case["people_matched"] == 2 * 16
    assert case["max_score_difference"] == 0.0 and case["max_box_difference_px"] < 1e-3
    # every joint agrees except where the rules differ by design, and each difference has its reason
    assert case["joints"] == 2 * 16 * 17
    assert case["max_joint_difference_px"] < 1e-3
    assert case["joints_differing_unexplained"] == 0
    assert case["joints_differing"] == sum(case[key] for key in case if key.startswith("joints_differing_by_design_"))
    # ours never refuses a peak CenterNet takes: CenterNet's accepted peak passes all of ours' tests
    assert case["joints_snapped_ours"] >= case["joints_snapped_centernet"]
    assert case["joints_snapped_ours"] - case["joints_snapped_centernet"] <= case["joints_differing"]
    assert "by design" in case["agreement_note"]


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
        assert case["ours_ms"] > 0 and case["baseline_ms"] > 0
    # the --quick sizes
    assert measured["targets"]["shape"] == [4, 17, 32, 32] and measured["targets"]["points"] == 4 * 3 * 17
    assert measured["focal_loss"]["shape"] == [2, 4, 32, 32]
    assert measured["decode_quarter"]["shape"] == measured["decode_dark"]["shape"] == [2, 68, 32, 32]
    # values known independently of the benchmark: 0 where the definitions coincide
    assert measured["targets"]["max_difference_within_3_sigma"] < 1e-6
    assert measured["targets"]["max_excess_beyond_3_sigma"] < 1e-6
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
