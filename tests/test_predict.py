"""``heatmapnet predict``: folders and videos, the ONNX backend against PyTorch, the torch-free
runtime, rendering, and boxes that are refused instead of giving garbage (issue 14, item 6)."""
import json
import subprocess
import sys
import textwrap
from dataclasses import replace

import cv2
import numpy as np
import pytest

from deploy_models import textured_image, tiny_checkpoint
from heatmapnet.cli import main
from heatmapnet.deploy.errors import DeployError
from heatmapnet.deploy.framing import check_boxes_in_image, parse_boxes
from heatmapnet.deploy.modes import draw_entry
from heatmapnet.deploy.runtime import OnnxPredictor
from heatmapnet.export import export_checkpoint
from heatmapnet.predict import Predictor

INPUT_SIZE = 64  # the tiny models' input, pixels
PADDING = 1.25  # top-down box padding (the configs' default)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """A top-down face checkpoint and its ONNX export (any batch size)."""
    folder = tmp_path_factory.mktemp("faces")
    checkpoint = tiny_checkpoint(folder / "faces.pt", "synthetic_faces")
    model = export_checkpoint(checkpoint, folder / "faces.onnx", dynamic_batch=True, check_images=0).path
    return checkpoint, model


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder of three images of different sizes (and a file that is not an image)."""
    folder = tmp_path_factory.mktemp("images")
    for name, (width, height), seed in (("b.png", (96, 80), 1), ("a.jpg", (120, 90), 2), ("c.png", (70, 110), 3)):
        cv2.imwrite(str(folder / name), textured_image(width, height, seed))
    (folder / "notes.txt").write_text("not an image")
    return folder


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("heatmapnet predict: "), err
    return err[0]


def _zoom_bound(width: float, height: float) -> float:
    """0.05 network-input px in image pixels for a crop of a w x h box (the longer side, padded,
    spans the 64 px input)."""
    return 0.05 * PADDING * max(width, height) / INPUT_SIZE


def test_onnx_backend_writes_what_the_pytorch_backend_writes_for_a_folder(faces, images, tmp_path, capsys):
    checkpoint, model = faces
    boxes = {str(images / "a.jpg"): [[10, 5, 60, 70], [50, 20, 60, 60]]}
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    common = [str(images), "--boxes", str(tmp_path / "boxes.json"), "--batch-size", "2"]
    assert main(["predict", *common, "--checkpoint", checkpoint, "--out", str(tmp_path / "torch.json")]) == 0
    assert main(["predict", *common, "--backend", "onnx", "--model", model, "--out", str(tmp_path / "onnx.json"),
                 "--render", str(tmp_path / "drawn")]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[-2:] == [f"keypoints of 3 images written to {tmp_path / 'onnx.json'}",
                            f"annotated images written to {tmp_path / 'drawn'}"]
    torch_json = json.loads((tmp_path / "torch.json").read_text())
    onnx_json = json.loads((tmp_path / "onnx.json").read_text())
    # the folder's images in name order, the text file left out
    assert [entry["image_path"] for entry in onnx_json] == [str(images / n) for n in ("a.jpg", "b.png", "c.png")]
    assert [entry["image_path"] for entry in torch_json] == [entry["image_path"] for entry in onnx_json]
    for ours, theirs in zip(onnx_json, torch_json):
        assert [p["bbox"] for p in ours["predictions"]] == [p["bbox"] for p in theirs["predictions"]]
        for mine, reference in zip(ours["predictions"], theirs["predictions"]):
            assert mine["keypoint_names"] == reference["keypoint_names"] and len(mine["keypoints"]) == 68
            distance = np.linalg.norm(np.subtract(mine["keypoints"], reference["keypoints"]), axis=-1)
            assert distance.max() <= _zoom_bound(*mine["bbox"][2:])
            np.testing.assert_allclose(mine["scores"], reference["scores"], rtol=0, atol=1e-5)
    # the boxed image has its two boxes, the others the whole image
    assert [p["bbox"] for p in onnx_json[0]["predictions"]] == [[10.0, 5.0, 60.0, 70.0], [50.0, 20.0, 60.0, 60.0]]
    assert [p["bbox"] for p in onnx_json[1]["predictions"]] == [[0.0, 0.0, 96.0, 80.0]]
    # each image drawn under its own name: the keypoints' pixels changed, the image's size kept
    for entry in onnx_json:
        name = entry["image_path"].split("/")[-1]
        original, drawn = cv2.imread(entry["image_path"]), cv2.imread(str(tmp_path / "drawn" / name))
        assert drawn.shape == original.shape and np.abs(drawn.astype(int) - original).sum() > 0
        x, y = np.round(entry["predictions"][0]["keypoints"][30]).astype(int)  # a drawn point
        if 0 <= x < original.shape[1] and 0 <= y < original.shape[0] and name.endswith(".png"):
            assert np.abs(drawn[y, x].astype(int) - original[y, x]).sum() > 0


@pytest.mark.parametrize("entry, backend", [("heatmapnet.deploy.cli", []), ("heatmapnet.cli", ["--backend", "onnx"]),
                                            ("heatmapnet.cli", [])])
def test_the_onnx_runtime_runs_without_torch_or_timm(faces, images, tmp_path, entry, backend):
    """``python -m heatmapnet.deploy predict`` and the ``heatmapnet`` command itself (its entry
    point, ``heatmapnet.cli.main``), given an ONNX model, import neither torch nor timm."""
    _, model = faces
    blocked_run = textwrap.dedent("""
        import importlib.abc, json, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "timm", "torchvision", "omegaconf", "scipy", "pycocotools"):
                    raise ImportError("blocked for this test: " + name)

        sys.meta_path.insert(0, Block())
        from importlib import import_module
        code = import_module(sys.argv[1]).main(sys.argv[2:])
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "timm"))), file=sys.stderr)
        sys.exit(code)
    """)
    out = tmp_path / "no_torch.json"
    done = subprocess.run([sys.executable, "-c", blocked_run, entry, "predict", str(images / "b.png"), "--model", model,
                           *backend, "--out", str(out)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "[]"  # neither torch nor timm was imported
    written = json.loads(out.read_text())
    reference = OnnxPredictor(model)(str(images / "b.png"))
    assert written == [{"image_path": str(images / "b.png"), "predictions": reference}]


def _write_video(path, frames, fps: float = 10.0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (frames[0].shape[1], frames[0].shape[0]))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()


def _read_video(path) -> list:
    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_a_video_comes_back_annotated_frame_for_frame(faces, tmp_path, suffix):
    checkpoint, model = faces
    source = [textured_image(96, 72, seed) for seed in range(6)]
    _write_video(tmp_path / "clip.avi", source)
    (tmp_path / "boxes.json").write_text(json.dumps({"2": [[20, 10, 50, 50]]}))
    rendered = tmp_path / f"drawn{suffix}"
    assert main(["predict", str(tmp_path / "clip.avi"), "--model", model, "--boxes", str(tmp_path / "boxes.json"),
                 "--batch-size", "4", "--out", str(tmp_path / "clip.json"), "--render", str(rendered)]) == 0
    written = json.loads((tmp_path / "clip.json").read_text())
    assert written["frame_count"] == 6 and written["fps"] == pytest.approx(10.0)
    assert (written["width"], written["height"]) == (96, 72)
    assert [frame["frame"] for frame in written["frames"]] == list(range(6))
    assert [frame["time_s"] for frame in written["frames"]] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    assert written["frames"][2]["predictions"][0]["bbox"] == [20.0, 10.0, 50.0, 50.0]
    assert written["frames"][3]["predictions"][0]["bbox"] == [0.0, 0.0, 96.0, 72.0]

    decoded_source, decoded = _read_video(tmp_path / "clip.avi"), _read_video(rendered)
    assert len(decoded) == 6 and decoded[0].shape == (72, 96, 3)
    predictor = OnnxPredictor(model)
    for frame, drawn, entry in zip(decoded_source, decoded, written["frames"]):
        expected = draw_entry(frame, entry["predictions"], "topdown", predictor.scheme)
        changed = np.abs(expected.astype(int) - frame).sum(axis=2) > 60  # where the drawing is
        assert changed.sum() > 50
        # there the written frame shows the drawing (up to the codec's loss), not the source
        to_drawing = np.abs(drawn.astype(int) - expected)[changed].mean()
        to_source = np.abs(drawn.astype(int) - frame)[changed].mean()
        assert to_drawing < to_source / 2


def test_bottomup_models_take_whole_frames_and_refuse_boxes(tmp_path, images, capsys):
    checkpoint = tiny_checkpoint(tmp_path / "people.pt", "people_bottomup")
    model = export_checkpoint(checkpoint, tmp_path / "people.onnx", check_images=0).path
    predictor = OnnxPredictor(model)
    predictor.metadata = replace(predictor.metadata, min_score=0.0)  # every candidate, not only confident people
    people = predictor(str(images / "a.jpg"))
    assert len(people) == 20 and np.asarray(people[0]["keypoints"]).shape == (17, 2)
    assert [p["score"] for p in people] == sorted((p["score"] for p in people), reverse=True)
    (tmp_path / "boxes.json").write_text(json.dumps({str(images / "a.jpg"): [[0, 0, 10, 10]]}))
    assert main(["predict", str(images / "a.jpg"), "--model", model, "--boxes", str(tmp_path / "boxes.json")]) == 2
    assert "this is a bottomup model; it takes whole images and no boxes" in _one_line_error(capsys)


# ----------------------------------------------------------------------------------------------
# issue 14, item 6: boxes that would give garbage are refused in one line
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("box,expected", [
    ([10, 10, 0, 20], "box 0 [10, 10, 0, 20]: width and height must be > 0 (got w=0, h=20)"),  # was NaN in the json
    ([10, 10, 30, -5], "box 0 [10, 10, 30, -5]: width and height must be > 0 (got w=30, h=-5)"),
    ([500, 10, 30, 30], "box 0 [500.0, 10.0, 30.0, 30.0] lies outside the 96x80 image"),  # was points far away
    ([-40, 10, 40, 30], "box 0 [-40.0, 10.0, 40.0, 30.0] lies outside the 96x80 image"),  # ends at x = 0
    ([10, 10, "30", 30], "box 0 is [10, 10, '30', 30]; expected [x, y, w, h], four numbers"),
])
def test_a_box_that_cannot_be_predicted_is_one_line_and_exit_2(faces, images, tmp_path, capsys, box, expected):
    checkpoint, model = faces
    image = str(images / "b.png")
    (tmp_path / "boxes.json").write_text(json.dumps({image: [box]}))
    for backend in (["--checkpoint", checkpoint], ["--model", model]):
        assert main(["predict", image, *backend, "--boxes", str(tmp_path / "boxes.json"),
                     "--out", str(tmp_path / "p.json")]) == 2
        line = _one_line_error(capsys)
        assert expected in line
        # the file and key where its form is wrong, the image where it does not fit
        assert f"{tmp_path / 'boxes.json'}: key '{image}': box 0" in line or f"{image}: box 0" in line
        assert not (tmp_path / "p.json").exists()


def test_a_nan_box_and_a_flat_box_list_are_refused(faces, images, tmp_path, capsys):
    _, model = faces
    image = str(images / "b.png")
    (tmp_path / "nan.json").write_text('{"%s": [[0, 0, NaN, 10]]}' % image)
    assert main(["predict", image, "--model", model, "--boxes", str(tmp_path / "nan.json")]) == 2
    assert "box 0 [0, 0, nan, 10] holds a value that is not a finite number" in _one_line_error(capsys)
    (tmp_path / "flat.json").write_text(json.dumps({image: [0, 0, 20, 10]}))
    assert main(["predict", image, "--model", model, "--boxes", str(tmp_path / "flat.json")]) == 2
    assert "got one flat list [0, 0, 20, 10]: write [[x, y, w, h]]" in _one_line_error(capsys)


def test_boxes_match_their_image_however_its_path_is_spelled(faces, images, tmp_path, capsys, monkeypatch):
    _, model = faces
    monkeypatch.chdir(images.parent)
    relative = f"{images.name}/b.png"
    spellings = {f"./{images.name}/../{images.name}/b.png": [[5, 6, 40, 30]], str(images / "c.png"): [[1, 2, 30, 40]]}
    (tmp_path / "boxes.json").write_text(json.dumps(spellings))
    (images.parent / "link.png").unlink(missing_ok=True)
    (images.parent / "link.png").symlink_to(images / "c.png")
    assert main(["predict", relative, "link.png", "--model", model, "--boxes", str(tmp_path / "boxes.json")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [entry["image_path"] for entry in printed] == [relative, "link.png"]  # as given
    assert [p["bbox"] for p in printed[0]["predictions"]] == [[5.0, 6.0, 40.0, 30.0]]  # not dropped
    assert [p["bbox"] for p in printed[1]["predictions"]] == [[1.0, 2.0, 30.0, 40.0]]  # through the link

    (tmp_path / "stray.json").write_text(json.dumps({"elsewhere/b.png": [[5, 6, 40, 30]]}))
    assert main(["predict", relative, "--model", model, "--boxes", str(tmp_path / "stray.json")]) == 2
    assert "key 'elsewhere/b.png' matches none of the 1 input images" in _one_line_error(capsys)
    (tmp_path / "twice.json").write_text(json.dumps({relative: [[5, 6, 40, 30]], f"./{relative}": [[1, 1, 9, 9]]}))
    assert main(["predict", relative, "--model", model, "--boxes", str(tmp_path / "twice.json")]) == 2
    assert f"keys '{relative}' and './{relative}' name the same image" in _one_line_error(capsys)


def test_the_predictor_api_refuses_bad_boxes_too(faces, images):
    checkpoint, model = faces
    for predictor in (Predictor(checkpoint), OnnxPredictor(model)):
        with pytest.raises(DeployError, match=r"box 1 \[5, 5, 0, 0\]: width and height must be > 0"):
            predictor(str(images / "b.png"), boxes=[[1, 1, 20, 20], [5, 5, 0, 0]])


def test_box_checks_at_the_image_border():
    # a box's pixels are x .. x + w - 1 (centres); it overlaps a 96 x 80 image while x < 96 and x + w > 0
    check_boxes_in_image(parse_boxes([[95.5, 79.5, 10, 10], [-9.5, -9.5, 10, 10]], "b"), (96, 80), "b")
    for box in ([96, 0, 10, 10], [0, 80, 10, 10], [-10, 0, 10, 10], [0, -10, 10, 10]):
        with pytest.raises(DeployError, match="lies outside the 96x80 image"):
            check_boxes_in_image(parse_boxes([box], "b"), (96, 80), "b")
    with pytest.raises(DeployError, match=r"b: box 1 is \[1, 2, 3\]; expected \[x, y, w, h\], four numbers"):
        parse_boxes([[0, 0, 5, 5], [1, 2, 3]], "b")
    assert parse_boxes([], "b").shape == (0, 4)


def test_predict_names_what_it_needs_in_one_line(faces, images, tmp_path, capsys):
    checkpoint, model = faces
    image = str(images / "b.png")
    assert main(["predict", image]) == 2
    assert "give --checkpoint PT (PyTorch) or --model FILE.onnx (onnxruntime), one of them" in _one_line_error(capsys)
    assert main(["predict", image, "--backend", "onnx", "--checkpoint", checkpoint]) == 2
    assert "--backend onnx needs --model FILE.onnx" in _one_line_error(capsys)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    assert main(["predict", image, "--model", str(tmp_path / "junk.onnx")]) == 2
    assert f"{tmp_path / 'junk.onnx'}: onnxruntime cannot load it as an ONNX model" in _one_line_error(capsys)
    assert main(["predict", image, "--model", str(tmp_path / "missing.onnx")]) == 2
    assert f"model file not found: {tmp_path / 'missing.onnx'}" in _one_line_error(capsys)
    assert main(["predict", str(images / "nothing.png"), "--model", model]) == 2
    assert f"input not found: {images / 'nothing.png'}" in _one_line_error(capsys)
    assert main(["predict", image, "--model", model, "--out", str(tmp_path)]) == 2
    assert "is a folder; give the path of the json file to write" in _one_line_error(capsys)
    _write_video(tmp_path / "clip.avi", [textured_image(32, 32, 0)] * 2)
    assert main(["predict", str(tmp_path / "clip.avi"), "--model", model, "--render", str(tmp_path / "x.gif")]) == 2
    assert "an annotated video is written as .mp4 or .avi" in _one_line_error(capsys)
    assert main(["predict", str(tmp_path / "clip.avi"), image, "--model", model]) == 2
    assert "give one video alone, or images and folders" in _one_line_error(capsys)


def test_an_onnx_file_that_heatmapnet_did_not_export_is_refused(tmp_path, images, capsys):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["out"])], "plain",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 8, 8])])
    onnx.save(helper.make_model(graph), str(tmp_path / "plain.onnx"))
    assert main(["predict", str(images / "b.png"), "--model", str(tmp_path / "plain.onnx")]) == 2
    assert "not a heatmapnet ONNX export" in _one_line_error(capsys)


# ----------------------------------------------------------------------------------------------
# bad conditions: a damaged video, another program's model, a large folder
# ----------------------------------------------------------------------------------------------
def _frame_starts(data: bytes) -> list:
    """Where each MJPG frame (a JPEG: FF D8 FF) starts in an .avi's bytes."""
    starts, at = [], data.find(b"\xff\xd8\xff")
    while at >= 0:
        starts.append(at)
        at = data.find(b"\xff\xd8\xff", at + 3)
    return starts


@pytest.mark.parametrize("damage", ["corrupt frame", "cut short"])
def test_a_damaged_video_keeps_the_frames_that_decode_and_names_the_missing_ones(faces, tmp_path, capsys, damage):
    _, model = faces
    _write_video(tmp_path / "clip.avi", [textured_image(64, 48, seed) for seed in range(20)])
    data = bytearray((tmp_path / "clip.avi").read_bytes())
    starts = _frame_starts(bytes(data))
    assert len(starts) == 20
    if damage == "corrupt frame":  # frame 8's JPEG header and first bytes overwritten
        data[starts[8]:starts[8] + 400] = np.random.default_rng(0).integers(0, 256, 400, dtype=np.uint8).tobytes()
        missing = [8]
    else:  # the file ends inside frame 10
        data = data[:starts[10] + 200]
        missing = list(range(10, 20))
    (tmp_path / "clip.avi").write_bytes(bytes(data))
    assert main(["predict", str(tmp_path / "clip.avi"), "--model", model, "--batch-size", "4",
                 "--out", str(tmp_path / "clip.json")]) == 0
    written = json.loads((tmp_path / "clip.json").read_text())
    kept = [frame for frame in range(20) if frame not in missing]
    assert [frame["frame"] for frame in written["frames"]] == kept
    assert written["frame_count"] == len(kept) and written["missing_frames"] == missing
    assert all(len(frame["predictions"]) == 1 for frame in written["frames"])
    assert written["frames"][-1]["time_s"] == pytest.approx(kept[-1] / 10.0)
    named = "8" if damage == "corrupt frame" else "10-19"
    assert (f"{tmp_path / 'clip.avi'}: frame(s) {named} of 20 could not be decoded (a damaged or cut stream); the "
            f"{len(kept)} that could are predicted") in capsys.readouterr().out
    # an intact video has no missing frames
    _write_video(tmp_path / "whole.avi", [textured_image(64, 48, seed) for seed in range(3)])
    assert main(["predict", str(tmp_path / "whole.avi"), "--model", model, "--out", str(tmp_path / "w.json")]) == 0
    assert json.loads((tmp_path / "w.json").read_text())["missing_frames"] == []
    assert "could not be decoded" not in capsys.readouterr().out


def test_a_model_of_another_program_is_one_line_whichever_way_it_is_given(tmp_path, images, capsys):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["out"])], "theirs",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 8, 8])])
    path = tmp_path / "theirs.onnx"
    onnx.save(helper.make_model(graph, producer_name="other-tool", producer_version="2.1"), str(path))
    image = str(images / "b.png")
    assert main(["predict", image, "--model", str(path)]) == 2
    assert _one_line_error(capsys) == (f"heatmapnet predict: {path}: not a heatmapnet ONNX export but a model written "
                                       "by 'other-tool' (its metadata has no format='heatmapnet-onnx'); predict runs "
                                       "the files `heatmapnet export` writes")
    assert main(["predict", image, "--checkpoint", str(path)]) == 2
    assert _one_line_error(capsys) == (f"heatmapnet predict: {path}: an ONNX model, not a PyTorch checkpoint; "
                                       f"--checkpoint takes a heatmapnet .pt file, an export runs as --model {path}")
    from heatmapnet.deploy.cli import main as deploy_main  # the torch-free command

    assert deploy_main(["predict", image, "--model", str(path)]) == 2
    assert "not a heatmapnet ONNX export but a model written by 'other-tool'" in _one_line_error(capsys)


def test_a_folder_streams_its_memory_does_not_grow_with_the_number_of_images(faces, tmp_path):
    from heatmapnet.bench import STREAM_GROWTH_BOUND, folder_peaks

    _, model = faces
    rows = folder_peaks(OnnxPredictor(model, threads=1), counts=(100, 1000), size=32, folder=tmp_path)
    assert rows[100]["images"] == 100 and rows[1000]["images"] == 1000
    # 900 more images, each entry 68 points (about 7 KB as json objects): held in a list they would
    # be > 5 MiB more, beyond the 2 MiB bound
    assert rows[1000]["peak_bytes"] - rows[100]["peak_bytes"] <= STREAM_GROWTH_BOUND, rows
    assert list(tmp_path.iterdir()) == []  # the images and json were temporary
