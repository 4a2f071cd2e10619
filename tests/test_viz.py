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

from heatmapnet.ablate import report
from heatmapnet.bottomup import BottomUpCodec
from heatmapnet.build import build_codec, build_dataset, build_mode, build_model, build_scheme, read_records
from heatmapnet.checkpoint import load_checkpoint, save_checkpoint
from heatmapnet.codec import HeatmapCodec
from heatmapnet.config import ConfigError, load_config
from heatmapnet.data.transforms import to_input_tensor
from heatmapnet.drawing import (BOX_COLOR, GT_COLOR, PERSON_PALETTE, PRED_COLOR, display_factor, draw_arrows,
                                draw_boxes, draw_keypoints, draw_people, heatmap_grid, input_image, magnify_image,
                                magnify_points, overlay_heatmap, peak_rows, person_color, resample_heatmap,
                                select_keypoints, stride_matrix, target_vs_prediction)
from heatmapnet.modes import BottomUpMode, MultiInstanceMode, TopDownMode
from heatmapnet.predict import Predictor
from heatmapnet.targets import FixedSigma
from heatmapnet.pictures import bottomup_pictures, centre_heatmap, centre_panel, joint_heatmaps, people_panel
from heatmapnet.viz import (add_viz_parser, config_from_checkpoint, decode_for_display, predict_maps, visualize_dataset,
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


def _sample_and_prediction(config, checkpoint_path, index: int = 0):
    """Val sample ``index`` of ``config`` (as the viz tool shows it: no augmentation) with its
    ground truth and the checkpoint's predicted points, in input pixels, worked out here: the
    model rebuilt from the checkpoint's weights, its maps decoded by the config's data mode
    (:func:`decode_for_display`, checked against hand-made maps above)."""
    loaded = load_checkpoint(checkpoint_path)
    scheme = loaded.scheme
    codec = build_codec(config, scheme)
    sample = build_dataset(config, read_records(config, "val"), codec, scheme, train=False)[index]
    model = build_model(config, scheme)
    model.load_state_dict(loaded.model)
    model.eval()
    flip = scheme.flip_permutation if config.eval.flip_test else None
    maps = predict_maps(model, sample["image"][None], flip, codec)
    return sample, decode_for_display(build_mode(config, scheme), codec, maps)


def _assert_gt_and_predictions_drawn(picture: np.ndarray, sample, shown=None, size: int = 64) -> None:
    """``picture``, a top-down sample's keypoints PNG (a 16 px title, the ``size`` px crop
    magnified, a legend), has the prediction colour at every predicted point (``shown``; None: no
    prediction colour anywhere in the crop) and the ground-truth
    colour at every visible ground-truth point no prediction cross covers. Only the crop is looked
    at: the legend below it holds both colours whatever was drawn."""
    factor = display_factor(size, size, 384)
    crop = picture[16:16 + size * factor]
    assert crop.shape[:2] == (size * factor, size * factor) and picture.shape[0] == 16 + size * factor + 20
    truth = magnify_points(sample["keypoints"].numpy()[sample["visible"].numpy().astype(bool)], factor)
    assert len(truth)
    if shown is None:  # no predictions: no prediction colour in the crop at all
        assert not _has_colour(crop, PRED_COLOR)
        predicted = np.full((1, 2), np.inf)
    else:
        predicted = magnify_points(shown.points[0][shown.visible[0]], factor)
        inside = ((predicted >= 0) & (predicted < size * factor)).all(-1)
        assert inside.any()
        for point in predicted[inside]:
            assert _colour_near(crop, point, PRED_COLOR, tolerance=60), point
    arm = max(2.0, 0.8 * factor + 0.5) + 2  # a cross's half-width with its outline
    checked = 0
    for point in truth:
        if np.abs(predicted - point).max(axis=1).min() > arm:  # no cross on it
            assert _colour_near(crop, point, GT_COLOR, tolerance=8), point  # the filled circle's middle
            checked += 1
    assert checked >= 1
    # and neither colour where nothing was drawn: the crop's corner far from every point
    far = [[x, y] for x in (2, size * factor - 3) for y in (2, size * factor - 3)
           if np.abs(np.vstack([predicted, truth]) - [x, y]).max(axis=1).min() > 3 * arm]
    for point in far:
        assert not _colour_near(crop, point, PRED_COLOR, 0, 8) and not _colour_near(crop, point, GT_COLOR, 0, 8)


def test_dataset_samples_are_written_as_pngs_of_the_expected_size(data_env, tmp_path):
    config = load_config("mtfl5", TINY)
    paths = visualize_dataset(config, tmp_path, num_samples=2)
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["sample_000_keypoints.png", "sample_000_heatmaps.png",
                                                     "sample_001_keypoints.png", "sample_001_heatmaps.png"]
    keypoints, heatmaps = _read_png(paths[0]), _read_png(paths[1])
    factor = display_factor(64, 64, 384)
    assert keypoints.shape == (16 + 64 * factor + 20, 64 * factor, 3)  # title, crop, legend
    sample = build_dataset(config, read_records(config, "val"), build_codec(config, build_scheme(config)),
                           build_scheme(config), train=False)[0]
    _assert_gt_and_predictions_drawn(keypoints, sample)  # the ground truth alone
    panel = 64 * display_factor(64, 64, 200)
    assert heatmaps.shape == (16 + 16 + panel, 6 * panel + 5 * 2, 3)  # title, max + 5 keypoint panels


def test_with_a_checkpoint_the_samples_show_predictions_and_target_vs_prediction(checkpoint, tmp_path):
    config = load_config("mtfl5", TINY)
    paths = visualize_dataset(config, tmp_path, num_samples=1, checkpoint=checkpoint, keypoints="nose")
    keypoints, heatmaps = _read_png(paths[0]), _read_png(paths[1])
    _assert_gt_and_predictions_drawn(keypoints, *_sample_and_prediction(config, checkpoint))  # sample 0 of 1
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
    _assert_gt_and_predictions_drawn(keypoints, *_sample_and_prediction(load_config("mtfl5", TINY), checkpoint))
    factor = display_factor(64, 64, 160)  # the checkpoint's 64 x 64 input: target vs prediction, [max | nose]
    assert heatmaps.shape == (16 + 16 + 64 * factor + 20, 2 * (3 * 64 * factor + 2 * 2) + 10, 3)


# ----------------------------------------------------------------------------------------------
# bottom-up: people in their own colours, the centre heatmap, the centre-to-joint offsets
# ----------------------------------------------------------------------------------------------
def _colour_near(image: np.ndarray, point, colour, radius: int = 1, tolerance: int = 40) -> bool:
    """Whether a pixel within ``radius`` of ``point`` (x, y) has ``colour``."""
    x, y = np.round(point).astype(int)
    window = image[max(0, y - radius):y + radius + 1, max(0, x - radius):x + radius + 1].astype(int)
    return bool((np.abs(window - colour).max(axis=2) < tolerance).any())


def _assert_people_drawn(panel: np.ndarray, people, visible, factor: int, hollow=None) -> set:
    """``panel`` (a people panel, the image magnified ``factor`` times) shows each person of
    ``people`` (N, K, 2, in the image's pixels) in its rank's colour at its visible joints: at a
    filled joint's middle, or (``hollow`` True: a ring, or a marker of unknown kind) within the
    marker's radius. Joints off the panel, joints that a later person's marker may cover, or near another
    person of the same colour (the palette repeats), are not looked at. Returns the ranks checked."""
    points = magnify_points(np.asarray(people, dtype=np.float64), factor)
    shown = np.asarray(visible, bool).reshape(points.shape[:2]) & np.isfinite(points).all(-1)
    inside = shown & (points >= 0).all(-1) & (points < panel.shape[1::-1]).all(-1)  # those off it are not drawn
    hollow = np.zeros(shown.shape, bool) if hollow is None else np.asarray(hollow, bool).reshape(shown.shape)
    radius = max(2.0, 0.8 * factor + 0.5)  # the viz tool's joint markers
    margin = 2 * radius + 4
    checked = set()
    for rank in range(len(points)):
        colour = person_color(rank)
        near = [points[other][shown[other]] for other in range(len(points))
                if other > rank or (other != rank and person_color(other) == colour)]
        for point, ring in zip(points[rank][inside[rank]], hollow[rank][inside[rank]]):
            if any(len(other) and np.abs(other - point).max(-1).min() <= margin for other in near):
                continue
            reach = int(np.ceil(radius)) + 1 if ring else 1
            assert _colour_near(panel, point, colour, reach), (rank, point)
            checked.add(rank)
    return checked


def test_each_person_gets_its_own_colour_and_hollow_joints_are_rings():
    canvas = np.zeros((60, 80, 3), np.uint8)
    people = np.array([[[10.0, 10.0], [10.0, 30.0]], [[50.0, 10.0], [50.0, 30.0]], [[70.0, 50.0], [70.0, 50.0]]])
    drawn = draw_people(canvas, people, skeleton=[(0, 1)], palette=PERSON_PALETTE[:2], radius=4.0,
                        hollow=[[False, True], [False, False], [False, False]])
    assert canvas.max() == 0
    first, second = person_color(0), person_color(1)
    assert first != second and person_color(2, PERSON_PALETTE[:2]) == first  # the palette's colours in turn
    assert _colour_near(drawn, (10, 10), first, 0) and _colour_near(drawn, (50, 10), second, 0)  # filled joints
    assert _colour_near(drawn, (10, 20), first, 0) and _colour_near(drawn, (50, 20), second, 0)  # skeletons
    assert _colour_near(drawn, (70, 50), first, 0)  # the third person: the 2-colour palette starts again
    assert not _colour_near(drawn, (10, 32), first, 0) and _colour_near(drawn, (14, 30), first)  # a ring
    assert _colour_near(drawn, (50, 32), second, 0)  # filled


def test_an_arrow_runs_from_its_start_to_its_end_and_no_further():
    canvas = np.zeros((80, 80, 3), np.uint8)
    starts, ends = np.array([[20.3, 60.6], [40.0, 40.0]]), np.array([[20.3, 15.2], [72.6, 47.1]])
    colours = [person_color(0), person_color(1)]
    drawn = draw_arrows(canvas, starts, ends, colours, thickness=2, tip_size=5.0)
    for start, end, colour in zip(starts, ends, colours):
        direction = (end - start) / np.linalg.norm(end - start)
        for t in (0.0, 0.25, 0.5, 0.75, 1.0):
            assert _colour_near(drawn, start + t * (end - start), colour), (start, end, t)
        assert not _colour_near(drawn, start - 4 * direction, colour)
        assert not _colour_near(drawn, end + 4 * direction, colour)
    assert draw_arrows(canvas, [[5.0, 5.0]], [[5.0, 5.0]]).max() == 0  # zero length: nothing


PEOPLE = np.array([[[16.3, 12.6], [27.4, 29.3]], [[47.2, 17.4], [57.6, 33.1]]])  # 2 people, 2 joints each
PEOPLE_BOXES = np.array([[4.0, 8.0, 26.0, 40.0], [36.0, 12.0, 24.0, 40.0]])  # centres (17, 28), (48, 32)
SHIFT = np.array([0.6, -0.45])  # regressed joints are off their peaks by this many heatmap px


def _bottomup_maps(codec: BottomUpCodec, people=PEOPLE, boxes=PEOPLE_BOXES, shift=SHIFT) -> torch.Tensor:
    """Hand-made activated maps (7 + 3K, h, w) of ``people``: the codec's targets written where
    the decoder reads them, the centre-to-joint offsets off by ``shift``, person 1's centre at 0.8
    and its joint 1's peak taken away (so that joint stays where it was regressed)."""
    visible = np.ones(people.shape[:2], bool)
    target = codec.encode(people, visible, boxes)
    layout, (height, width) = codec.layout, codec.heatmap_size
    maps = torch.zeros(layout.num_outputs, height, width)
    maps[layout.centre] = target["heatmaps"][:1]
    maps[layout.joints] = target["heatmaps"][1:]
    for n in range(len(people)):
        y, x = divmod(int(target["centre_index"][n]), width)
        maps[layout.centre_offset, y, x] = target["centre_offset"][n]
        maps[layout.size, y, x] = target["size"][n]
        maps[layout.joint_offsets, y, x] = (target["joint_offsets"][n] + torch.tensor(shift).float()).reshape(-1)
        for k in range(people.shape[1]):
            y, x = divmod(int(target["joint_index"][n, k]), width)
            maps[layout.joint_offset.start:layout.joint_offset.stop, y, x] = target["joint_offset"][n, k]
    centre = maps[layout.centre.start]
    centre[:, width // 2:] *= 0.8  # person 1 (right half) scores 0.8
    maps[layout.joints.start + 1, :, 10:] = 0.0  # person 1's joint 1 (x = 57.6 px: heatmap column 14) gone
    return maps


def test_bottom_up_maps_decode_for_display_as_people_with_snapped_joints_centres_and_offsets():
    codec = BottomUpCodec((64, 64), 2, stride=4)
    maps = _bottomup_maps(codec)[None]
    shown = decode_for_display(BottomUpMode(), codec, maps)
    assert shown.instances and shown.points.shape == (2, 2, 2) and shown.visible.all()
    assert shown.scores == pytest.approx([1.0, 0.8], abs=1e-4)  # best first
    assert shown.snapped.tolist() == [[True, True], [True, False]]
    regressed = PEOPLE + SHIFT * codec.stride
    assert shown.regressed == pytest.approx(regressed, abs=1e-3)
    assert shown.points[0] == pytest.approx(PEOPLE[0], abs=1e-3)  # snapped onto the peaks
    assert shown.points[1, 0] == pytest.approx(PEOPLE[1, 0], abs=1e-3)
    assert shown.points[1, 1] == pytest.approx(regressed[1, 1], abs=1e-3)  # no peak: left where regressed
    assert shown.centres == pytest.approx(PEOPLE_BOXES[:, :2] + PEOPLE_BOXES[:, 2:] / 2, abs=1e-3)

    back = torch.tensor([[[2.0, 0.0, 10.0], [0.0, 2.0, -5.0]]], dtype=torch.float64)  # input -> original
    moved = decode_for_display(BottomUpMode(), codec, maps, back=back)
    for name in ("points", "centres", "regressed"):
        assert getattr(moved, name) == pytest.approx(getattr(shown, name) * 2 + [10.0, -5.0], abs=1e-6)
    only_first = decode_for_display(BottomUpMode(min_score=0.9), codec, maps)  # the mode says who is listed
    assert only_first.points.shape == (1, 2, 2) and only_first.snapped.tolist() == [[True, True]]

    assert joint_heatmaps(codec, maps).shape == (1, 2, 16, 16)
    assert torch.equal(joint_heatmaps(codec, maps)[0, 0], maps[0, codec.layout.joints.start])
    target = codec.encode(PEOPLE, np.ones((2, 2), bool), PEOPLE_BOXES)["heatmaps"]
    assert torch.equal(joint_heatmaps(codec, target), target[1:]) and torch.equal(centre_heatmap(codec, target),
                                                                                  target[0])


def test_the_offset_arrows_start_at_the_decoded_centres_and_end_at_the_regressed_joints():
    codec = BottomUpCodec((64, 64), 2, stride=4)
    maps = _bottomup_maps(codec)
    shown = decode_for_display(BottomUpMode(), codec, maps[None])
    factor = 4
    panel = centre_panel(np.zeros((64, 64, 3), np.uint8), centre_heatmap(codec, maps), codec, factor, shown.centres,
                         shown.regressed, mark_centres=False)
    assert panel.shape == (256, 256, 3)
    centres = magnify_points(PEOPLE_BOXES[:, :2] + PEOPLE_BOXES[:, 2:] / 2, factor)  # where the arrows start
    tips = magnify_points(PEOPLE + SHIFT * codec.stride, factor)  # where they end: the regressed joints
    for rank in range(2):
        colour = person_color(rank)
        for tip in tips[rank]:
            direction = (tip - centres[rank]) / np.linalg.norm(tip - centres[rank])
            assert _colour_near(panel, centres[rank] + direction, colour)  # the tail
            assert not _colour_near(panel, centres[rank] - 4 * direction, colour)  # nothing behind it
            assert _colour_near(panel, (centres[rank] + tip) / 2, colour)
            assert _colour_near(panel, tip, colour)  # the tip
            assert not _colour_near(panel, tip + 4 * direction, colour)  # and no further
            # the snapped point (the peak), 2.4 and -1.8 px (x 4 shown) away, is not where it ends
            snapped = tip - magnify_points(SHIFT * codec.stride, factor) + (factor - 1) / 2
            assert not _colour_near(panel, snapped + 2 * (snapped - tip) / np.linalg.norm(snapped - tip), colour)
    marked = centre_panel(np.zeros((64, 64, 3), np.uint8), centre_heatmap(codec, maps), codec, factor, shown.centres,
                          shown.regressed)
    assert tuple(marked[tuple(np.round(centres[1][::-1]).astype(int))]) == person_color(1)  # a cross on the centre


def test_the_centre_heatmap_is_brightest_at_each_persons_centre():
    codec = BottomUpCodec((64, 64), 2, stride=4, exact_peak=False)  # Gaussians centred on the sub-pixel centre
    centre_map = centre_heatmap(codec, _bottomup_maps(codec))
    factor = 3
    panel = centre_panel(np.zeros((64, 64, 3), np.uint8), centre_map, codec, factor, alpha=1.0, colormap="gray")
    centres = magnify_points(PEOPLE_BOXES[:, :2] + PEOPLE_BOXES[:, 2:] / 2, factor)
    values = (panel[:, :, 1].astype(np.float64) / 255.0) ** 0.5  # on black, grey, opacity = value: 255 v^2
    half = 32 * factor  # person 0 in the left half, person 1 in the right
    for rank, (left, right) in enumerate([(0, half), (half, 64 * factor)]):
        part = values[:, left:right]
        y, x = np.unravel_index(np.argmax(part), part.shape)
        brightest = np.array([x + left, y])
        assert np.abs(brightest - centres[rank]).max() <= codec.stride * factor / 2 + 0.5  # the centre's heatmap px
        reach = 3 * codec.stride * factor  # the peak's surroundings: its Gaussian (sigma 0.75 heatmap px)
        top, start = y - reach, x + left - reach
        window = values[top:y + reach + 1, start:x + left + reach + 1]
        assert np.linalg.norm(_centroid(window) + [start, top] - centres[rank]) < 0.25 * factor


def test_bottom_up_pictures_show_people_centres_and_joint_heatmaps():
    codec = BottomUpCodec((64, 64), 2, stride=4)
    maps = _bottomup_maps(codec)
    shown = decode_for_display(BottomUpMode(), codec, maps[None])
    scheme = type("Scheme", (), {"keypoint_names": ("top", "side"), "skeleton": ((0, 1),)})()
    target = codec.encode(PEOPLE, np.ones((2, 2), bool), PEOPLE_BOXES)["heatmaps"].numpy()
    image = np.full((64, 64, 3), 90, np.uint8)
    pictures = bottomup_pictures(image, codec, scheme, target, PEOPLE, np.ones((2, 2), bool), PEOPLE_BOXES,
                                 maps.numpy(), shown, caption="hand-made")
    assert sorted(pictures) == ["centres", "heatmaps", "keypoints"]
    factor = display_factor(64, 64, 384)
    assert pictures["keypoints"].shape == (16 + 16 + 64 * factor + 20, 2 * 64 * factor + 4, 3)  # gt | predicted
    assert pictures["centres"].shape == pictures["keypoints"].shape
    # caption, panel titles, [ground truth | predicted], legend: each person where it belongs, not in the legend
    top, size, right = 32, 64 * factor, 64 * factor + 4
    ground_truth, predicted = (pictures["keypoints"][top:top + size, left:left + size] for left in (0, right))
    assert _assert_people_drawn(ground_truth, PEOPLE, np.ones((2, 2), bool), factor) == {0, 1}
    assert _assert_people_drawn(predicted, shown.points, shown.visible, factor, ~shown.snapped) == {0, 1}
    centre_points = magnify_points(PEOPLE_BOXES[:, :2] + PEOPLE_BOXES[:, 2:] / 2, factor)  # each a cross
    for left in (0, right):
        panel = pictures["centres"][top:top + size, left:left + size]
        for rank, centre in enumerate(centre_points):
            assert _colour_near(panel, centre, person_color(rank))
            assert not _colour_near(panel, centre, person_color(1 - rank), 3)

    panel = people_panel(image, shown.points, shown.visible, (), factor, hollow=~shown.snapped)
    joints = magnify_points(shown.points, factor)
    assert tuple(panel[tuple(np.round(joints[0, 0][::-1]).astype(int))]) == person_color(0)
    assert tuple(panel[tuple(np.round(joints[1, 0][::-1]).astype(int))]) == person_color(1)  # another colour
    assert tuple(panel[tuple(np.round(joints[1, 1][::-1]).astype(int))]) != person_color(1)  # hollow: regressed
    without_model = bottomup_pictures(image, codec, scheme, target, PEOPLE, np.ones((2, 2), bool), PEOPLE_BOXES)
    assert sorted(without_model) == ["centres", "heatmaps", "keypoints"]
    assert without_model["keypoints"].shape == (16 + 64 * factor + 20, 64 * factor, 3)  # ground truth alone


BOTTOMUP_TINY = ["data.train.num_samples=4", "data.val.num_samples=4", "data.input_size=[64,64]",
                 "data.num_workers=0", "model.backbone=mobilenetv3_small_050", "model.head_channels=16"]


@pytest.fixture
def bottomup_checkpoint(tmp_path):
    """An untrained bottom-up model whose centre and joint heatmaps are near 1 everywhere (so people
    score near 1 x 1 and are decoded and drawn), written by ``save_checkpoint``."""
    config = load_config("people_bottomup", BOTTOMUP_TINY)
    scheme = build_scheme(config)
    torch.manual_seed(0)
    model = build_model(config, scheme)
    state = model.state_dict()
    state["head.classifier.bias"][0] = 6.0  # the centre channel: sigmoid ~ 1
    state["head.classifier.bias"][5 + 2 * 17:5 + 3 * 17] = 6.0  # the 17 joint channels
    path = tmp_path / "bottomup.pt"
    save_checkpoint(path, config=OmegaConf.to_container(config), scheme=scheme, model=state, step=0)
    return path


def test_the_viz_command_draws_bottom_up_samples_and_images(bottomup_checkpoint, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="heatmapnet")
    add_viz_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["viz", "people_bottomup", "--set", *BOTTOMUP_TINY, "--num-samples", "2",
                              "--out", str(tmp_path / "a")])
    assert args.handler(args) == 0
    printed = capsys.readouterr().out.split()
    assert [p.rsplit("/", 1)[-1] for p in printed] == [f"sample_00{n}_{name}.png" for n in (0, 1)
                                                       for name in ("keypoints", "centres", "heatmaps")]
    keypoints, centres, heatmaps = map(_read_png, printed[:3])
    config = load_config("people_bottomup", BOTTOMUP_TINY)
    scheme = build_scheme(config)
    sample = build_dataset(config, read_records(config, "val"), build_codec(config, scheme), scheme, train=False)[0]
    factor = display_factor(64, 64, 384)  # caption, panel title, the ground-truth people, legend
    assert keypoints.shape == (16 + 16 + 64 * factor + 20, 64 * factor, 3)
    people = sample["keypoints"].numpy()
    assert len(people) >= 2  # the ground-truth people, each in its own colour where its joints are
    assert _assert_people_drawn(keypoints[32:32 + 64 * factor], people, sample["visible"].numpy(),
                                factor) == set(range(len(people)))
    panel = 64 * display_factor(64, 64, 200)
    assert heatmaps.shape[1] == 6 * panel + 5 * 2  # the 17 joints' target maps (max + 17 panels, 6 a row)
    assert heatmaps.shape[0] == 16 + 3 * (16 + panel) + 2 * 2

    args = parser.parse_args(["viz", "--checkpoint", str(bottomup_checkpoint), "--num-samples", "1", "--keypoints",
                              "nose", "--out", str(tmp_path / "b")])
    assert args.handler(args) == 0
    keypoints, centres, heatmaps = map(_read_png, capsys.readouterr().out.split())
    factor = display_factor(64, 64, 384)
    assert keypoints.shape == (16 + 16 + 64 * factor + 20, 2 * 64 * factor + 4, 3)  # ground truth | predicted
    predicted = keypoints[32:32 + 64 * factor, 64 * factor + 4:]
    sample, shown = _sample_and_prediction(load_config("people_bottomup", BOTTOMUP_TINY), bottomup_checkpoint)
    assert len(shown.points) >= 2
    assert {0, 1} <= _assert_people_drawn(predicted, shown.points, shown.visible, factor, ~shown.snapped)
    assert centres.shape == keypoints.shape
    group = (16 + 64 * display_factor(64, 64, 160), 3 * 64 * display_factor(64, 64, 160) + 2 * 2)
    assert heatmaps.shape == (16 + group[0] + 20, 2 * group[1] + 10, 3)  # title, [max | nose], legend

    config = load_config("people_bottomup", BOTTOMUP_TINY)
    sample = build_dataset(config, read_records(config, "val"), build_codec(config, build_scheme(config)),
                           build_scheme(config), train=False)[0]
    image_path = tmp_path / "crowd.png"
    cv2.imwrite(str(image_path), cv2.resize(input_image(sample["image"]), (96, 80)))
    args = parser.parse_args(["viz", "--checkpoint", str(bottomup_checkpoint), "--image", str(image_path),
                              "--out", str(tmp_path / "c")])
    assert args.handler(args) == 0
    printed = capsys.readouterr().out.split()
    assert [p.rsplit("/", 1)[-1] for p in printed] == ["crowd_keypoints.png", "crowd_centres.png",
                                                       "crowd_heatmaps.png"]
    picture = _read_png(printed[0])
    factor = display_factor(96, 80, 480)
    assert picture.shape == (16 + 80 * factor + 20, 96 * factor, 3)
    # the people ``heatmapnet predict`` reports for the image, in original pixels, each in its colour
    people = [person["keypoints"] for person in Predictor(bottomup_checkpoint)(str(image_path))]
    assert len(people) >= 2
    points = np.array(people, dtype=np.float64)
    checked = _assert_people_drawn(picture[16:16 + 80 * factor], points, np.ones(points.shape[:2], bool), factor,
                                   hollow=np.ones(points.shape[:2], bool))  # snapped or not: not in the json
    assert len({person_color(rank) for rank in checked}) >= 2  # people off the picture or covered are not checked


def test_the_ablation_example_image_works_for_a_bottom_up_run(bottomup_checkpoint, tmp_path):
    config = load_config("people_bottomup", BOTTOMUP_TINY)
    scheme = build_scheme(config)
    codec = build_codec(config, scheme)
    model = build_model(config, scheme)
    model.load_state_dict(load_checkpoint(bottomup_checkpoint).model)
    data = type("Data", (), {"scheme": scheme, "val_set": build_dataset(config, read_records(config, "val"), codec,
                                                                         scheme, train=False)})()
    trainer = type("Trainer", (), {"model": model, "config": config, "codec": codec, "data": data})()
    maps, points = report.predict_and_decode(trainer, data.val_set[0]["image"], 0.3)
    assert maps.shape == (1, 17, 16, 16)  # the joint heatmaps
    assert points.instances and points.points.shape[1:] == (17, 2) and len(points.points) > 0
    name = report.example_image("people", {"focal": trainer}, tmp_path / "example.png")
    picture = _read_png(tmp_path / name)
    assert picture.shape[0] > 100 and picture.shape[1] > 100
