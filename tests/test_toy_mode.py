"""A data mode is one registered object: a toy mode defined in this file alone (a top-down variant
with its own name, json entry and drawing) trains, evaluates, exports to ONNX, predicts through
the torch-free runtime and the deploy command, draws its pictures and heads an ablation report."""
import json

import cv2
import numpy as np
import pytest

from deploy_models import textured_image
from heatmapnet.ablate import report
from heatmapnet.config import load_config
from heatmapnet.deploy.cli import main as deploy_main
from heatmapnet.deploy.framing import apply_affine_rows
from heatmapnet.deploy.modes import MODE_SPECS, CropSpec
from heatmapnet.deploy.runtime import OnnxPredictor
from heatmapnet.engine import Trainer
from heatmapnet.export import POINT_TOLERANCE, export_checkpoint
from heatmapnet.modes import MODES, TopDownMode, register_mode
from heatmapnet.predict import Predictor, evaluate_checkpoint
from heatmapnet.viz import visualize_dataset, visualize_image

WHITE = (255, 255, 255)


def toy_json(keypoints: np.ndarray, scores: np.ndarray) -> list:
    """The toy mode's entry: per crop its points and their mean score."""
    return [{"crop": i, "points": np.asarray(keypoints[i], dtype=np.float64).tolist(),
             "mean_score": float(np.mean(scores[i]))} for i in range(len(keypoints))]


class ToySpec(CropSpec):
    name = "toy"
    outputs = ("heatmaps", "keypoints", "scores")  # the top-down graph's
    summary = "toy crops: a top-down model that writes its points bare"

    def entry(self, outputs, back, boxes, metadata):
        return toy_json(apply_affine_rows(outputs["keypoints"], back), outputs["scores"])

    def draw(self, pixels, entry, scheme):
        """One white pixel at each point, rounded to the nearest pixel."""
        out = pixels.copy()
        for item in entry:
            for x, y in item["points"]:
                if 0 <= round(y) < out.shape[0] and 0 <= round(x) < out.shape[1]:
                    out[round(y), round(x)] = WHITE
        return out


class ToyMode(TopDownMode):
    spec = ToySpec()
    mean_shape_baseline = False  # a mode says whether eval scores the mean shape beside the model

    def image_results(self, predictions, scheme, boxes):
        return toy_json(predictions.keypoints, predictions.scores)


@pytest.fixture(scope="module")
def toy_mode():
    register_mode(ToyMode)
    yield ToyMode
    MODES.unregister("toy")
    MODE_SPECS.unregister("toy")


@pytest.fixture(scope="module")
def toy_run(toy_mode, tmp_path_factory):
    """A toy-mode run of the tiny faces config (the settings of conftest's ``tiny_run``) and its export."""
    from conftest import TINY_RUN

    folder = tmp_path_factory.mktemp("toy")
    overrides = [f"{key}={value}" for key, value in {**TINY_RUN, "data.mode": "toy"}.items()]
    config = load_config("synthetic_faces", overrides)
    Trainer(config, folder / "run").run()
    checkpoint = folder / "run" / "last.pt"
    export = export_checkpoint(checkpoint, folder / "toy.onnx", check_images=2)
    image = folder / "image.png"
    cv2.imwrite(str(image), textured_image(96, 80, seed=3))
    return config, checkpoint, export, image, folder


def test_the_toy_mode_trains_and_evaluates_with_its_own_json(toy_run):
    config, checkpoint, _, _, folder = toy_run
    summary = evaluate_checkpoint(config, checkpoint, folder / "eval")
    assert summary["step"] == 4 and "mean_shape_baseline" not in summary  # the baseline is topdown's own
    written = json.loads((folder / "eval" / "metrics.json").read_text())
    assert written["metrics"] == summary["metrics"] and np.isfinite(written["metrics"]["nme"])
    assert len(json.loads((folder / "eval" / "predictions.json").read_text())) == 8  # one per validation face


def test_the_toy_export_runs_in_the_torch_free_runtime_as_pytorch_predicts(toy_run):
    _, checkpoint, export, image, folder = toy_run
    assert export.metadata.mode == "toy" and export.check.passed
    onnx_entry = OnnxPredictor(export.path)(str(image))
    torch_entry = Predictor(str(checkpoint))(str(image))
    assert [sorted(item) for item in onnx_entry] == [["crop", "mean_score", "points"]]  # the toy layout
    # no boxes: the whole 96 x 80 image is the box, grown to a 96 px square and padded 1.25 x into 64 x 64 inputs
    scale = 1.25 * 96 / 64
    ours, theirs = np.array(onnx_entry[0]["points"]), np.array(torch_entry[0]["points"])
    assert ours.shape == (68, 2) and np.abs(ours - theirs).max() <= POINT_TOLERANCE * scale


def test_the_deploy_command_writes_and_draws_the_toy_entries(toy_run):
    _, _, export, image, folder = toy_run
    out, render = folder / "predict.json", folder / "render"
    assert deploy_main(["predict", str(image), "--model", export.path, "--out", str(out),
                        "--render", str(render)]) == 0
    entry = json.loads(out.read_text())[0]["predictions"]
    assert entry == OnnxPredictor(export.path)(str(image))
    drawn, original = cv2.imread(str(render / image.name)), cv2.imread(str(image))
    expected = {(round(y), round(x)) for x, y in entry[0]["points"] if 0 <= round(x) < 96 and 0 <= round(y) < 80}
    changed = {tuple(p) for p in np.argwhere(np.any(drawn != original, axis=-1))}
    assert changed == {p for p in expected if tuple(original[p]) != WHITE}
    assert all(tuple(drawn[p]) == WHITE for p in expected)
    # a crop mode takes boxes; the whole-image rule does not apply to it
    boxes = folder / "boxes.json"
    boxes.write_text(json.dumps({str(image): [[10, 8, 40, 50]]}))
    assert deploy_main(["predict", str(image), "--model", export.path, "--boxes", str(boxes), "--out",
                        str(folder / "boxed.json")]) == 0


def test_viz_draws_the_toy_mode_and_its_report_line_comes_from_the_mode(toy_run):
    config, checkpoint, _, image, folder = toy_run
    samples = visualize_dataset(config, folder / "viz", num_samples=2, checkpoint=str(checkpoint))
    assert [p.rsplit("/", 1)[1] for p in samples] == ["sample_000_keypoints.png", "sample_000_heatmaps.png",
                                                      "sample_001_keypoints.png", "sample_001_heatmaps.png"]
    pictures = visualize_image(str(checkpoint), image, folder / "viz_image")
    assert [p.rsplit("/", 1)[1] for p in pictures] == ["image_keypoints.png", "image_heatmaps.png"]
    assert all(cv2.imread(path) is not None for path in samples + pictures)
    lines = report.setting_report({"name": "toyset", "mode": "toy", "config": "c", "scheme": "s", "budgets": {}}, {})
    assert lines[0] == "## toyset: toy crops: a top-down model that writes its points bare"
