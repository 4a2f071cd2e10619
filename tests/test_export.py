"""``heatmapnet export``: the ONNX graph run by onnxruntime against PyTorch's own decoding, the
metadata, the export-time check and the command's errors."""
import json
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from deploy_models import textured_image, tiny_checkpoint
from heatmapnet.testing import people_maps
from heatmapnet.build import build_codec
from heatmapnet.codec import HeatmapCodec
from heatmapnet.cli import main
from heatmapnet.config import load_config
from heatmapnet.data.transforms import IMAGE_MEAN, IMAGE_STD, letterbox_matrix
from heatmapnet.deploy.framing import network_inputs
from heatmapnet.deploy.metadata import DeployMetadata
from heatmapnet.export import DEFAULT_OPSET, ExportError, check_inputs, export_checkpoint
from heatmapnet.metadata import load_scheme
from heatmapnet.modes import BottomUpMode, MultiInstanceMode, TopDownMode
from heatmapnet.predict import Predictor
from heatmapnet.targets import FixedSigma

POINT_TOLERANCE_PX = 0.05  # the bound on ONNX vs PyTorch after decoding, network-input pixels


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """A top-down face model (68 iBUG points, DARK) and its export, any batch size."""
    folder = tmp_path_factory.mktemp("faces")
    checkpoint = tiny_checkpoint(folder / "faces.pt", "synthetic_faces")
    report = export_checkpoint(checkpoint, folder / "faces.onnx", dynamic_batch=True, check_images=4)
    return checkpoint, report


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    """A bottom-up pose model (17 COCO joints) and its export. Its joint threshold is 0.5: an
    untrained model's joint maps hover at the sigmoid prior 0.1, where the default threshold 0.1
    would leave snapping to float rounding (snapping is compared on maps that decide it clearly in
    test_bottomup_decoding_graph_gives_the_codecs_people)."""
    folder = tmp_path_factory.mktemp("people")
    checkpoint = tiny_checkpoint(folder / "people.pt", "people_bottomup", ["eval.joint_threshold=0.5"])
    report = export_checkpoint(checkpoint, folder / "people.onnx", dynamic_batch=True, check_images=4)
    return checkpoint, report


def _inputs(count: int, size=(64, 64)) -> np.ndarray:
    """Letterboxed, normalised textured images of several shapes."""
    images = [textured_image(64 + 16 * i, 48 + 8 * i, seed=i) for i in range(count)]
    return np.concatenate([network_inputs(image, [letterbox_matrix((image.shape[1], image.shape[0]), size)], size)
                           for image in images])


def _run(path, inputs: np.ndarray) -> dict:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, {"images": inputs})))


def test_topdown_face_model_round_trip_within_0_05_px(faces):
    checkpoint, report = faces
    predictor = Predictor(checkpoint)
    inputs = _inputs(5)
    ours = _run(report.path, inputs)
    with torch.no_grad():
        maps = predictor.heatmaps(torch.from_numpy(inputs))
        decoded = predictor.codec.decode(maps)  # PyTorch's own decoder: argmax + DARK (C kernel on CPU)
    assert ours["keypoints"].shape == (5, 68, 2) and ours["scores"].shape == (5, 68)
    assert np.abs(ours["heatmaps"] - maps.numpy()).max() <= 1e-4
    distance = np.linalg.norm(ours["keypoints"] - decoded.coordinates.numpy(), axis=-1)
    assert distance.max() <= POINT_TOLERANCE_PX
    np.testing.assert_allclose(ours["scores"], decoded.scores.numpy(), rtol=0, atol=1e-5)
    # the points are where DARK puts them, not the argmax pixel centres: refinement ran in the graph
    peak = maps.flatten(2).argmax(dim=2)
    centres = torch.stack([peak % 16, peak // 16], dim=-1).numpy() * 4 + 1.5  # heatmap pixel -> input pixel
    assert np.abs(ours["keypoints"] - centres).max() > 0.1
    assert np.abs(ours["keypoints"] - centres).max() <= 4.0 + 1e-4  # DARK moves a point at most one heatmap pixel


class _MapsIn(torch.nn.Module):
    """A stand-in network whose heatmaps are its input: the graph then decodes the maps it is given."""

    def heatmaps(self, images: torch.Tensor) -> torch.Tensor:
        return images


def _graph_to_onnx(graph, example: torch.Tensor, path, outputs) -> str:
    torch.onnx.export(graph, (example,), str(path), dynamo=False, opset_version=17, input_names=["images"],
                      output_names=list(outputs), dynamic_axes={"images": {0: "batch"}})
    return str(path)


@pytest.mark.parametrize("person_score", ["centre", "centre_x_joints"])
def test_bottomup_decoding_graph_gives_the_codecs_people(tmp_path, person_score):
    # crowds as a trained network might map them (bench.people_maps): distinct background values,
    # regressed joints off by N(0, 0.4) px so that snapping has work to do
    maps, codec = people_maps(batch=3, num_keypoints=17, map_size=32, people=(2, 6))
    codec.person_score = person_score
    graph = BottomUpMode.graph(_MapsIn(), codec, BottomUpMode(), None)
    path = _graph_to_onnx(graph, maps[:2], tmp_path / "people.onnx", BottomUpMode.spec.outputs)
    ours = _run(path, maps.numpy())
    reference = codec.decode(maps)
    assert ours["scores"].shape == (3, 32) and ours["keypoints"].shape == (3, 32, 17, 2)
    np.testing.assert_allclose(ours["scores"], reference.scores.numpy(), rtol=0, atol=1e-6)
    distance = np.linalg.norm(ours["keypoints"] - reference.keypoints.numpy(), axis=-1)
    assert distance.max() <= POINT_TOLERANCE_PX
    np.testing.assert_allclose(ours["keypoint_scores"], reference.keypoint_scores.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours["boxes"], reference.boxes.numpy(), rtol=0, atol=1e-3)
    snapped = reference.snapped.numpy()[np.isfinite(reference.scores.numpy())]
    assert snapped.sum() > 20 and (~snapped).sum() > 20  # both kinds of joints were compared


def test_topdown_and_peak_graphs_find_points_drawn_at_known_places(tmp_path):
    # one Gaussian (sigma 2 heatmap px, no exact peak) per channel at known sub-pixel places:
    # DARK finds a Gaussian's centre exactly, whatever the sub-pixel position
    codec = HeatmapCodec((128, 96), 4, FixedSigma(2.0), exact_peak=False, refine="dark")
    truth = np.array([[[17.3, 40.6], [64.0, 50.25], [100.9, 11.1]], [[30.45, 70.7], [90.1, 20.2], [5.5, 80.0]]])
    maps = torch.stack([codec.encode(points[None], np.ones((1, 3), bool)).heatmaps for points in truth])
    path = _graph_to_onnx(TopDownMode.graph(_MapsIn(), codec, None, None), maps, tmp_path / "td.onnx",
                          TopDownMode.spec.outputs)
    ours = _run(path, maps.numpy())
    np.testing.assert_allclose(ours["keypoints"], truth, rtol=0, atol=2e-3)
    np.testing.assert_allclose(ours["scores"], maps.flatten(2).amax(dim=2).numpy(), rtol=0, atol=0)

    # multi-instance: six points on one channel, the top 6 peaks of the map
    spread = np.array([[12.3, 10.6], [60.0, 30.25], [110.9, 14.1], [30.45, 80.7], [90.1, 70.2], [70.5, 55.0]])
    one_channel = codec.encode(spread[None], np.ones((1, 6), bool)).heatmaps.amax(dim=0, keepdim=True)[None]
    path = _graph_to_onnx(MultiInstanceMode.graph(_MapsIn(), codec, MultiInstanceMode(max_peaks=6), None),
                          one_channel, tmp_path / "multi.onnx", MultiInstanceMode.spec.outputs)
    ours = _run(path, one_channel.numpy())
    order = np.lexsort((ours["points"][0, :, 1], ours["points"][0, :, 0]))
    np.testing.assert_allclose(ours["points"][0, order], spread[np.lexsort((spread[:, 1], spread[:, 0]))],
                               rtol=0, atol=2e-3)
    assert (ours["classes"] == 0).all()


@pytest.mark.slow
@pytest.mark.parametrize("config_name,overrides", [
    ("synthetic_faces", ["eval.refine=quarter", "eval.flip_test=true"]),
    ("synthetic_faces", ["eval.blur_sigma=1.0"]),
    ("synthetic_people", []),  # multi-instance peaks
    ("people_bottomup", ["eval.person_score=centre", "eval.flip_test=true", "eval.joint_threshold=0.5"]),
])
def test_every_decoding_variant_passes_the_export_check(tmp_path, config_name, overrides):
    checkpoint = tiny_checkpoint(tmp_path / "model.pt", config_name, overrides)
    report = export_checkpoint(checkpoint, tmp_path / "model.onnx", check_images=3)
    assert report.check.passed and report.check.point_difference_px <= POINT_TOLERANCE_PX
    assert report.check.heatmap_difference <= 1e-4


def test_metadata_carries_the_scheme_input_and_decoding(faces, people):
    _, report = faces
    props = {entry.key: entry.value for entry in onnx.load(report.path).metadata_props}
    scheme = load_scheme("ibug68")
    assert props["format"] == "heatmapnet-onnx" and props["mode"] == "topdown"
    assert json.loads(props["keypoint_names"]) == list(scheme.keypoint_names)
    assert [tuple(pair) for pair in json.loads(props["flip_pairs"])] == list(scheme.flip_pairs)
    assert [tuple(edge) for edge in json.loads(props["skeleton"])] == list(scheme.skeleton)
    assert json.loads(props["scheme"])["name"] == "ibug68"
    assert json.loads(props["input_size"]) == [64, 64] and props["stride"] == "4"
    assert json.loads(props["mean"]) == pytest.approx([0.485, 0.456, 0.406])  # ImageNet's, as training used
    assert json.loads(props["std"]) == pytest.approx([0.229, 0.224, 0.225])
    assert json.loads(props["padding"]) == 1.25 and "min_score" not in props
    decoding = json.loads(props["decoding"])
    assert decoding["refine"] == "dark" and "DARK Taylor step" in decoding["in_graph"]
    assert "argmax per channel" in decoding["in_graph"] and decoding["flip_test"] is False
    assert json.loads(props["outputs"]) == ["heatmaps", "keypoints", "scores"]
    assert props["step"] == "7"
    read = DeployMetadata.from_props(props, report.path)
    assert read.scheme == scheme and read.input_size == (64, 64) and read.mode == "topdown"

    _, report = people
    props = {entry.key: entry.value for entry in onnx.load(report.path).metadata_props}
    assert props["mode"] == "bottomup" and "padding" not in props
    assert json.loads(props["min_score"]) == BottomUpMode().min_score  # the mode's, as predict's json uses it
    assert json.loads(props["outputs"]) == ["heatmaps", "scores", "keypoints", "keypoint_scores", "boxes"]
    assert json.loads(props["decoding"])["person_score"] == "centre_x_joints"


def test_a_fixed_batch_export_takes_batches_of_one(faces, tmp_path):
    checkpoint, dynamic = faces
    fixed = export_checkpoint(checkpoint, tmp_path / "fixed.onnx", check_images=2)
    session = ort.InferenceSession(fixed.path, providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, 64, 64]
    assert ort.InferenceSession(dynamic.path).get_inputs()[0].shape[0] == "batch"
    inputs = _inputs(2)
    one_by_one = np.concatenate([_run(fixed.path, inputs[i:i + 1])["keypoints"] for i in range(2)])
    np.testing.assert_allclose(one_by_one, _run(dynamic.path, inputs)["keypoints"], rtol=0, atol=1e-3)


def test_an_export_that_misses_its_tolerance_fails_with_the_difference_and_writes_nothing(faces, tmp_path):
    checkpoint, _ = faces
    out = tmp_path / "never.onnx"
    with pytest.raises(ExportError, match=r"not written, the ONNX model disagrees with PyTorch: .*heatmaps differ by "
                                          r"at most .* \(tolerance -1\), points by .* px"):
        export_checkpoint(checkpoint, out, check_images=2, heatmap_tolerance=-1.0)
    assert not out.exists() and not (tmp_path / "never.onnx.tmp").exists()


def test_the_check_falls_back_to_synthetic_images_where_the_split_cannot_be_read(tmp_path):
    config = load_config("ytf68", ["data.input_size=[64,64]", f"data.val.ann_file={tmp_path / 'missing'}"])
    codec = build_codec(config, load_scheme("ibug68"))
    inputs, source = check_inputs(config, codec, load_scheme("ibug68"), 3)
    assert inputs.shape == (3, 3, 64, 64) and source.startswith("synthetic images (the validation split could not")
    assert "missing" in source
    # normalised pixels: (p - mean) / std with p in [0, 1]
    low = (0.0 - IMAGE_MEAN) / IMAGE_STD
    high = (1.0 - IMAGE_MEAN) / IMAGE_STD
    per_channel = inputs.transpose(0, 1).reshape(3, -1)
    assert (per_channel.min(dim=1).values.numpy() >= low - 1e-6).all()
    assert (per_channel.max(dim=1).values.numpy() <= high + 1e-6).all()


def test_the_export_command_prints_the_check_and_refuses_bad_paths(faces, tmp_path, capsys):
    checkpoint, _ = faces
    out = tmp_path / "cli.onnx"
    assert main(["export", "--checkpoint", checkpoint, "--out", str(out), "--opset", "18", "--check-images", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"{out} written" in printed and "opset 18, batch 1, topdown, 68 keypoints, input 64x64" in printed
    assert "onnxruntime vs PyTorch on 2 images of the validation split" in printed
    assert onnx.load(str(out)).opset_import[0].version == 18

    assert main(["export", "--checkpoint", checkpoint, "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    missing = tmp_path / "missing.pt"
    assert main(["export", "--checkpoint", str(missing), "--out", str(out)]) == 2
    assert f"checkpoint not found: {missing}" in capsys.readouterr().err


def test_an_opset_below_what_the_model_needs_names_the_lowest_that_works(faces, tmp_path, capfd):
    checkpoint, _ = faces
    out = tmp_path / "old.onnx"
    assert main(["export", "--checkpoint", checkpoint, "--out", str(out), "--opset", "7", "--check-images", "0"]) == 2
    captured = capfd.readouterr()
    assert captured.out == ""  # not torch's graph dump
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("heatmapnet export: --opset 7: the model needs opset "), lines
    lowest = int(re.search(r"export with --opset (\d+)$", lines[0]).group(1))
    assert 7 < lowest <= DEFAULT_OPSET and "at 7: " in lines[0]
    assert not out.exists() and sorted(path.name for path in tmp_path.iterdir()) == []  # no probe, no .tmp left
    # the lowest indeed: it exports (and runs in onnxruntime), the one below does not
    report = export_checkpoint(checkpoint, out, opset=lowest, check_images=1)
    assert onnx.load(report.path).opset_import[0].version == lowest and report.check.passed
    with pytest.raises(ExportError, match=f"--opset {lowest - 1}: the model needs opset {lowest} or higher"):
        export_checkpoint(checkpoint, tmp_path / "below.onnx", opset=lowest - 1, check_images=0)
    with pytest.raises(ExportError, match=r"--opset 99: this torch and onnx export opsets up to \d+"):
        export_checkpoint(checkpoint, tmp_path / "above.onnx", opset=99, check_images=0)


@pytest.mark.slow
def test_the_inference_bench_times_onnxruntime_beside_pytorch_at_two_batch_sizes(tmp_path):
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--repeats", "1", "--cases", "inference", "--device", "cpu",
                 "--json", str(out)]) == 0
    (case,) = json.loads(out.read_text())["cases"]
    assert case["name"] == "inference" and case["skipped"] is None and case["batches"] == [1, 4]
    for batch in (1, 4):
        onnx_ms, torch_ms = case[f"onnxruntime_ms_batch{batch}"], case[f"pytorch_ms_batch{batch}"]
        assert case[f"onnxruntime_images_per_s_batch{batch}"] == pytest.approx(batch / onnx_ms * 1e3)
        assert case[f"pytorch_images_per_s_batch{batch}"] == pytest.approx(batch / torch_ms * 1e3)
        assert case[f"speedup_batch{batch}"] == pytest.approx(torch_ms / onnx_ms)
    assert case["time_ratio"] == pytest.approx(case["onnxruntime_ms_batch4"] / case["pytorch_ms_batch4"])
    assert "mobilenetv3_large_075" in case["model"] and "68 keypoints" in case["model"]
