"""Visualisation: heatmaps land on the pixels they describe, markers on their sub-pixel points,
and the viz tool writes readable PNGs for datasets, checkpoints and single images."""
import argparse
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from heatmapnet.build import build_model, build_scheme
from heatmapnet.checkpoint import load_checkpoint, save_checkpoint
from heatmapnet.codec import HeatmapCodec
from heatmapnet.config import ConfigError, load_config
from heatmapnet.data.transforms import to_input_tensor
from heatmapnet.drawing import (BOX_COLOR, GT_COLOR, PRED_COLOR, display_factor, draw_boxes, draw_keypoints,
                                heatmap_grid, input_image, magnify_image, magnify_points, overlay_heatmap, peak_rows,
                                resample_heatmap, select_keypoints, stride_matrix, target_vs_prediction)
from heatmapnet.modes import MultiInstanceMode, TopDownMode
from heatmapnet.predict import Predictor
from heatmapnet.targets import FixedSigma
from heatmapnet.viz import (add_viz_parser, config_from_checkpoint, decode_for_display, visualize_dataset,
                            visualize_image)


def _centroid(values: np.ndarray) -> np.ndarray:
    """(x, y) centroid of a non-negative (H, W) map."""
    values = values.astype(np.float64)
    ys, xs = np.mgrid[0:values.shape[0], 0:values.shape[1]]
    return np.array([(xs * values).sum(), (ys * values).sum()]) / values.sum()


def _one_point_heatmap(codec: HeatmapCodec, point) -> np.ndarray:
    encoded = codec.encode(np.array([[point]], dtype=np.float32), np.array([[True]]))
    return encoded.heatmaps[0].numpy()


# ----------------------------------------------------------------------------------------------
# alignment: heatmaps and markers on the sub-pixel keypoint
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stride, input_size, point", [(4, (128, 96), (53.3, 40.8)), (2, (64, 64), (30.7, 21.2)),
                                                       (8, (128, 128), (66.6, 59.1))])
def test_the_overlaid_heatmap_and_the_drawn_marker_both_centre_on_the_subpixel_keypoint(stride, input_size, point):
    codec = HeatmapCodec(input_size, stride, FixedSigma(2.0), exact_peak=False)
    heatmap = _one_point_heatmap(codec, point)
    width, height = input_size

    resampled = resample_heatmap(heatmap, codec, (width, height))
    assert resampled.shape == (height, width)
    assert np.linalg.norm(_centroid(resampled) - point) < 0.02

    # the overlay itself: on black with a grey colormap, brightness = 255 * v**2 (opacity v)
    overlaid = overlay_heatmap(np.zeros((height, width, 3), np.uint8), heatmap, codec, alpha=1.0, colormap="gray")
    values = (overlaid[:, :, 1].astype(np.float64) / 255.0) ** 0.5
    overlay_centre = _centroid(values)
    assert np.linalg.norm(overlay_centre - point) < 0.1
    brightest = np.unravel_index(np.argmax(overlaid[:, :, 1]), (height, width))[::-1]
    assert np.abs(np.array(brightest) - point).max() <= stride / 2.0 + 0.5  # within the peak's heatmap pixel

    # the codec decodes the same map to the same place, and the marker is drawn there
    decoded = codec.decode(torch.from_numpy(heatmap)[None, None]).coordinates[0, 0].numpy()
    assert np.linalg.norm(decoded - point) < 0.05
    marker = draw_keypoints(np.zeros((height, width, 3), np.uint8), np.array([point]), radius=3.0)
    marker_centre = _centroid(marker.max(axis=2))
    assert np.linalg.norm(marker_centre - point) < 0.1
    assert np.linalg.norm(marker_centre - overlay_centre) < 0.2


def test_naive_stride_mappings_miss_the_keypoint_by_the_predicted_amount():
    """What the explicit heatmap -> input matrix guards against. ``x_in = s * x_heat`` (a plain
    scale, as ``cv2.warpAffine`` with [[s, 0, 0], [0, s, 0]]) puts every peak (s-1)/2 px up-left;
    ``align_corners=True`` interpolation (x_in = x_heat (W-1)/(w-1)) shifts it by an amount that
    grows across the image. ``cv2.resize`` to exactly (s*w, s*h) shares the codec's half-pixel
    convention and agrees with ``resample_heatmap``."""
    stride, size, point = 4, (128, 128), np.array([90.3, 37.6])
    codec = HeatmapCodec(size, stride, FixedSigma(2.0), exact_peak=False)
    heatmap = _one_point_heatmap(codec, point)
    ours = resample_heatmap(heatmap, codec)
    assert np.linalg.norm(_centroid(ours) - point) < 0.02

    plain_scale = cv2.warpAffine(heatmap, np.array([[stride, 0.0, 0.0], [0.0, stride, 0.0]]), size,
                                 flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    assert _centroid(plain_scale) - point == pytest.approx([-(stride - 1) / 2.0] * 2, abs=0.02)

    corners = F.interpolate(torch.from_numpy(heatmap)[None, None], size=size[::-1], mode="bilinear",
                            align_corners=True)[0, 0].numpy()
    in_heatmap = codec.input_to_heatmap(point)
    expected = in_heatmap * (size[0] - 1) / (size[0] // stride - 1)
    assert _centroid(corners) == pytest.approx(expected, abs=0.05)
    assert np.abs(_centroid(corners) - point).max() > 0.5

    resized = cv2.resize(heatmap, size, interpolation=cv2.INTER_LINEAR)
    assert np.abs(resized - ours).max() < 1e-5


def test_a_magnified_display_keeps_heatmaps_and_points_aligned():
    codec = HeatmapCodec((64, 64), 4, FixedSigma(1.5), exact_peak=False)
    point = np.array([25.4, 38.9])
    heatmap = _one_point_heatmap(codec, point)
    factor = 3
    shown = overlay_heatmap(np.zeros((64 * factor, 64 * factor, 3), np.uint8), heatmap, codec.stride * factor,
                            alpha=1.0, colormap="gray")
    centre = _centroid((shown[:, :, 1] / 255.0) ** 0.5)
    assert np.linalg.norm(centre - magnify_points(point, factor)) < 0.2
    # an image magnified the same way puts a pixel's content at its magnified centre
    image = np.zeros((64, 64, 3), np.uint8)
    image[38, 25] = 255
    big = magnify_image(image, factor)
    assert _centroid(big[:, :, 0].astype(np.float64)) == pytest.approx(magnify_points([25, 38], factor), abs=0.01)
    assert stride_matrix(factor) @ np.array([25, 38, 1.0]) == pytest.approx(magnify_points([25, 38], factor))


@pytest.mark.parametrize("marker", ["circle", "cross", "ring"])
@pytest.mark.parametrize("point", [(10.3, 20.7), (31.5, 8.25), (17.0, 17.0)])
def test_a_marker_is_drawn_centred_on_its_subpixel_point(marker, point):
    canvas = np.zeros((40, 48, 3), np.uint8)
    drawn = draw_keypoints(canvas, np.array([point]), marker=marker, radius=4.0)
    assert canvas.max() == 0  # the input is left alone
    centre = _centroid(drawn.max(axis=2))
    assert np.linalg.norm(centre - point) < 0.1
    rounded = draw_keypoints(canvas, np.round([point]), marker=marker, radius=4.0)
    if not np.allclose(np.round(point), point):  # whole-pixel drawing would miss by the rounding
        assert np.linalg.norm(_centroid(rounded.max(axis=2)) - point) > 0.2


def test_invisible_and_missing_keypoints_are_not_drawn_and_skeleton_edges_need_both_ends():
    canvas = np.zeros((40, 40, 3), np.uint8)
    points = np.array([[10.0, 10.0], [30.0, 30.0], [np.nan, np.nan]])
    assert draw_keypoints(canvas, points, visible=[False, False, True]).max() == 0
    drawn = draw_keypoints(canvas, points, visible=[True, False, True], skeleton=[(0, 1), (0, 2)])
    assert drawn[10, 10].max() > 0 and drawn[30, 30].max() == 0 and drawn[20, 20].max() == 0
    joined = draw_keypoints(canvas, points, skeleton=[(0, 1)], color=GT_COLOR)
    assert tuple(joined[20, 20]) == GT_COLOR  # the edge passes through the midpoint


def test_the_input_image_is_recovered_from_the_normalised_tensor():
    image = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    back = input_image(torch.from_numpy(to_input_tensor(image)))
    assert back.shape == image.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - image).max() <= 1


def test_the_drawing_primitives_need_no_torch():
    code = "import sys, heatmapnet.drawing; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_box_frame_runs_along_the_pixel_edges_of_the_box_also_magnified():
    def centre(profile, offset):
        return offset + (profile * np.arange(len(profile))).sum() / profile.sum()

    canvas = np.zeros((40, 40, 3), np.uint8)
    framed = draw_boxes(canvas, [[10, 12, 20, 16]])
    assert canvas.max() == 0
    assert np.abs(framed[20, 10].astype(int) - BOX_COLOR).max() < 90  # the frame's colour, antialiased
    lines = framed.max(axis=2).astype(np.float64)
    assert lines[20, 12:28].max() == 0  # the inside is left alone
    # a box from x = 10, 20 px wide covers pixels 10..29: its frame runs along x = 9.5 and 29.5
    edges = [centre(lines[20, :20], 0), centre(lines[20, 20:], 20), centre(lines[:20, 20], 0),
             centre(lines[20:, 20], 20)]
    assert edges == pytest.approx([9.5, 29.5, 11.5, 27.5], abs=0.1)
    factor = 3  # the same box on the image magnified 3 times: its edges magnified with it
    big = draw_boxes(np.zeros((120, 120, 3), np.uint8), [[10, 12, 20, 16]], factor).max(axis=2).astype(np.float64)
    assert [centre(big[60, :60], 0), centre(big[:60, 60], 0)] == pytest.approx(magnify_points([9.5, 11.5], factor),
                                                                                  abs=0.1)


def test_peaks_are_grouped_by_type_into_rows_best_first():
    points, visible = peak_rows([1, 0, 1, 1], [[1, 1], [2, 2], [3, 3], [4, 4]], num_keypoints=3)
    assert points.shape == (3, 3, 2)
    assert visible.tolist() == [[True, True, False], [False, True, False], [False, True, False]]
    assert points[:, 1].tolist() == [[1, 1], [3, 3], [4, 4]] and points[0, 0].tolist() == [2, 2]
    points, visible = peak_rows([], np.zeros((0, 2)), num_keypoints=2)
    assert points.shape == (1, 2, 2) and not visible.any()


def test_decode_for_display_decodes_through_the_mode_in_input_or_original_pixels():
    codec = HeatmapCodec((64, 64), 4, FixedSigma(1.5), exact_peak=False)
    truth = np.array([[20.2, 30.7], [40.6, 22.1]])
    maps = codec.encode(truth[None], np.ones((1, 2), bool)).heatmaps[None]
    shown = decode_for_display(TopDownMode(), codec, maps)
    assert shown.instances and shown.points.shape == (1, 2, 2) and shown.visible.all()
    assert np.abs(shown.points[0] - truth).max() < 0.1
    assert shown.points[0] == pytest.approx(codec.decode(maps).coordinates[0].double().numpy())
    back = torch.tensor([[[2.0, 0.0, 10.0], [0.0, 2.0, -5.0]]], dtype=torch.float64)  # input -> original
    original = decode_for_display(TopDownMode(), codec, maps, back=back)
    assert original.points[0] == pytest.approx(shown.points[0] * 2 + [10.0, -5.0])

    # multi-instance: the peaks above the threshold, grouped by type; no instances to join
    people = np.array([[[12.0, 14.0], [40.0, 20.0]], [[50.0, 44.0], [np.nan, np.nan]]])
    visible = np.isfinite(people).all(-1)
    maps = codec.encode(np.nan_to_num(people), visible).heatmaps[None].clone()  # every instance in one map a type
    maps[0, 1] *= 0.5  # type 1's one peak at 0.5
    shown = decode_for_display(MultiInstanceMode(max_peaks=8), codec, maps, peak_threshold=0.3)
    assert not shown.instances and shown.points.shape == (2, 2, 2)
    assert shown.visible.tolist() == [[True, True], [True, False]]
    found = sorted(map(tuple, np.round(shown.points[:, 0][shown.visible[:, 0]])))
    assert found == [(12.0, 14.0), (50.0, 44.0)]
    assert np.round(shown.points[0, 1]).tolist() == [40.0, 20.0]
    assert decode_for_display(MultiInstanceMode(max_peaks=8), codec, maps, peak_threshold=0.6).visible.sum() == 2


# ----------------------------------------------------------------------------------------------
# grids
# ----------------------------------------------------------------------------------------------
def test_many_keypoints_get_a_max_panel_and_an_even_spread_of_fifteen_unless_selected():
    names = [f"p{i}" for i in range(68)]
    assert select_keypoints(5) == [0, 1, 2, 3, 4]
    spread = select_keypoints(68)
    assert len(spread) == 15 and spread[0] == 0 and spread[-1] == 67
    assert select_keypoints(68, "all") == list(range(68))
    assert select_keypoints(68, "p8, 30,p8", names) == [8, 30]
    with pytest.raises(ValueError, match="unknown keypoint 'chin'"):
        select_keypoints(68, "chin", names)
    with pytest.raises(ValueError, match="out of range"):
        select_keypoints(68, [70], names)

    codec = HeatmapCodec((64, 48), 4)
    maps = np.random.default_rng(1).random((68, 12, 16)).astype(np.float32)
    image = np.zeros((48, 64, 3), np.uint8)
    factor = display_factor(64, 48, 200)
    panel_w, panel_h = 64 * factor, 48 * factor + 16  # title bar 16 px
    grid = heatmap_grid(image, maps, names, codec, columns=4)
    assert grid.shape == (4 * panel_h + 3 * 2, 4 * panel_w + 3 * 2, 3)  # 1 + 15 panels, 4 a row
    grid = heatmap_grid(image, maps, names, codec, columns=4, keypoints="p3,p4")
    assert grid.shape == (panel_h, 3 * panel_w + 2 * 2, 3)


def test_target_vs_prediction_shows_target_prediction_and_points_per_keypoint():
    codec = HeatmapCodec((64, 64), 4, FixedSigma(1.5), exact_peak=False)
    truth = np.array([[20.2, 30.7], [40.6, 22.1]])
    guess = truth + [[3.0, -2.0], [0.0, 0.0]]
    target = codec.encode(truth[None], np.ones((1, 2), bool)).heatmaps.numpy()
    predicted = codec.encode(guess[None], np.ones((1, 2), bool)).heatmaps.numpy()
    picture = target_vs_prediction(np.zeros((64, 64, 3), np.uint8), target, predicted, ["a", "b"], codec,
                                   truth, None, guess, None, skeleton=[(0, 1)], groups_per_row=1)
    factor = display_factor(64, 64, 160)
    group_h = 64 * factor + 16
    assert picture.shape == (3 * group_h + 2 * 10 + 20, 3 * 64 * factor + 2 * 2, 3)  # rows: max, a, b; legend
    # row "a": the third panel has the ground truth and the prediction where they belong
    top, left = group_h + 10 + 16, 2 * (64 * factor + 2)
    points_panel = picture[top:top + 64 * factor, left:left + 64 * factor]
    gx, gy = np.round(magnify_points(truth[0], factor)).astype(int)
    px, py = np.round(magnify_points(guess[0], factor)).astype(int)
    assert np.abs(points_panel[gy, gx].astype(int) - GT_COLOR).max() < 40
    assert np.abs(points_panel[py, px].astype(int) - PRED_COLOR).max() < 40


# ----------------------------------------------------------------------------------------------
# the tool on real data and checkpoints
# ----------------------------------------------------------------------------------------------
TINY = ["data.train.subset=0:8", "data.val.subset=0:8", "data.input_size=[64,64]", "data.num_workers=0",
        "model.backbone=mobilenetv3_small_050", "model.head_channels=16"]


@pytest.fixture
def data_env(shared_data, monkeypatch):
    monkeypatch.setenv("HEATMAPNET_DATA", str(shared_data))
    return shared_data


@pytest.fixture
def checkpoint(data_env, tmp_path):
    """An untrained MTFL5 model written by ``save_checkpoint``, as the trainer writes it (faster
    than training)."""
    config = load_config("mtfl5", TINY)
    scheme = build_scheme(config)
    torch.manual_seed(0)
    model = build_model(config, scheme)
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, config=OmegaConf.to_container(config), scheme=scheme, model=model.state_dict(), step=0)
    return path


def _read_png(path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"{path} is not a readable image"
    return image


def _has_colour(image: np.ndarray, colour) -> bool:
    return bool((np.abs(image.astype(int) - colour).max(axis=2) < 8).any())


def test_dataset_samples_are_written_as_pngs_of_the_expected_size(data_env, tmp_path):
    config = load_config("mtfl5", TINY)
    paths = visualize_dataset(config, tmp_path, num_samples=2)
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["sample_000_keypoints.png", "sample_000_heatmaps.png",
                                                     "sample_001_keypoints.png", "sample_001_heatmaps.png"]
    keypoints, heatmaps = _read_png(paths[0]), _read_png(paths[1])
    factor = display_factor(64, 64, 384)
    assert keypoints.shape == (16 + 64 * factor + 20, 64 * factor, 3)  # title, crop, legend
    assert _has_colour(keypoints, GT_COLOR) and not _has_colour(keypoints, PRED_COLOR)
    panel = 64 * display_factor(64, 64, 200)
    assert heatmaps.shape == (16 + 16 + panel, 6 * panel + 5 * 2, 3)  # title, max + 5 keypoint panels


def test_with_a_checkpoint_the_samples_show_predictions_and_target_vs_prediction(checkpoint, tmp_path):
    config = load_config("mtfl5", TINY)
    paths = visualize_dataset(config, tmp_path, num_samples=1, checkpoint=checkpoint, keypoints="nose")
    keypoints, heatmaps = _read_png(paths[0]), _read_png(paths[1])
    assert _has_colour(keypoints, GT_COLOR) and _has_colour(keypoints, PRED_COLOR)
    factor = display_factor(64, 64, 160)
    group = (16 + 64 * factor, 3 * 64 * factor + 2 * 2)
    assert heatmaps.shape == (16 + group[0] + 20, 2 * group[1] + 10, 3)  # title, [max | nose], legend


def test_one_image_is_drawn_with_its_predictions_in_original_pixels(checkpoint, data_env, tmp_path):
    image_path = data_env / "mtfl5" / "AFLW" / "0001-image20056.jpg"
    keypoints_png, heatmaps_png = visualize_image(checkpoint, image_path, tmp_path)
    assert keypoints_png.endswith("0001-image20056_keypoints.png")
    picture, grid = _read_png(keypoints_png), _read_png(heatmaps_png)
    factor = display_factor(80, 80, 480)
    assert picture.shape == (16 + 80 * factor + 20, 80 * factor, 3)
    assert grid.shape[1] == 6 * 64 * display_factor(64, 64, 200) + 5 * 2
    predicted = np.array(Predictor(checkpoint)(str(image_path))[0]["keypoints"])
    for x, y in np.round(magnify_points(predicted, factor)).astype(int):
        if 0 <= x < 80 * factor and 0 <= y < 80 * factor:  # each cross is centred on its prediction
            assert np.abs(picture[16 + y, x].astype(int) - PRED_COLOR).max() < 60


def test_the_viz_command_writes_and_prints_the_pngs(data_env, checkpoint, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="heatmapnet")
    add_viz_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["viz", "mtfl5", "--set", *TINY, "--num-samples", "1", "--split", "train",
                              "--out", str(tmp_path / "a")])
    assert args.handler(args) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 2 and all(_read_png(p) is not None for p in printed)

    image = str(data_env / "mtfl5" / "AFLW" / "0002-image04733.jpg")
    args = parser.parse_args(["viz", "--checkpoint", str(checkpoint), "--image", image, "--box", "10,10,60,60",
                              "--out", str(tmp_path / "b")])
    assert args.handler(args) == 0
    assert [p.rsplit("/", 1)[-1] for p in capsys.readouterr().out.split()] == \
        ["0002-image04733_keypoints.png", "0002-image04733_heatmaps.png"]

    args = parser.parse_args(["viz", "--image", image, "--out", str(tmp_path / "c")])
    with pytest.raises(ConfigError, match="needs --checkpoint"):
        args.handler(args)


def test_without_a_config_the_viz_command_uses_the_checkpoints_own(checkpoint, tmp_path, capsys):
    config = config_from_checkpoint(checkpoint, ["data.val.subset=0:2"])
    assert config.data.scheme == "mtfl5" and config.model.head_channels == 16 and config.data.val.subset == "0:2"
    assert config_from_checkpoint(load_checkpoint(checkpoint)).data.val.subset == "0:8"
    with pytest.raises(ConfigError, match="key.sub=value"):
        config_from_checkpoint(checkpoint, ["data.val.subset"])

    parser = argparse.ArgumentParser(prog="heatmapnet")
    add_viz_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["viz", "--checkpoint", str(checkpoint), "--num-samples", "1", "--keypoints", "nose",
                              "--out", str(tmp_path)])
    assert args.handler(args) == 0
    keypoints, heatmaps = map(_read_png, capsys.readouterr().out.split())
    assert _has_colour(keypoints, GT_COLOR) and _has_colour(keypoints, PRED_COLOR)
    factor = display_factor(64, 64, 160)  # the checkpoint's 64 x 64 input: target vs prediction, [max | nose]
    assert heatmaps.shape == (16 + 16 + 64 * factor + 20, 2 * (3 * 64 * factor + 2 * 2) + 10, 3)
