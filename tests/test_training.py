"""Training engine, configs, evaluation and prediction on a tiny slice of real MTFL data."""
import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf

from heatmapnet.build import build_codec, build_model
from heatmapnet.checkpoint import load_checkpoint
from heatmapnet.cli import main
from heatmapnet.config import ConfigError, RunConfig, config_from_dict, load_config
from heatmapnet.data.transforms import to_input_tensor, warp_image
from heatmapnet.distributed import DistInfo
from heatmapnet.engine import NonFiniteLossError, StepBatchSampler, Trainer, learning_rate_factor
from heatmapnet.imageio import read_image
from heatmapnet.predict import Predictor

REPO = Path(__file__).resolve().parent.parent


#: MTFL5 runs differ from the shared tiny run (conftest.TINY_RUN) in these: real faces (the first 48
#: training and 16 validation faces), mtfl5's own learning rate, a 2-step warm-up, no checkpoint
#: but the last; 64 px crops and a small backbone as there: a few seconds per run on two cores
MTFL_RUN = {"data.train.subset": "0:48", "data.val.subset": "0:16", "train.lr": 2.0e-3, "train.warmup_steps": 2,
            "train.checkpoint_every": 1000, "eval.batch_size": 16}

# The run that learns: 30 steps on 96 faces at lr 0.01 (about 7 s on two cores). Its validation
# NME came out at 0.15-0.23 for seeds 0, 1, 2; the same model untrained scores 1.01 (seed 0).
TRAINED_STEPS = 30
TRAINED_RUN = {**MTFL_RUN, "train.steps": TRAINED_STEPS, "data.train.subset": "0:96", "train.lr": 0.01,
               "train.log_every": 5}


@pytest.fixture(scope="module")
def tiny_overrides(tiny_run):
    """``tiny_overrides(steps=4, **changes)``: an MTFL5 run of ``steps`` steps (:data:`MTFL_RUN`)."""
    return lambda steps=4, **changes: tiny_run(**{**MTFL_RUN, "train.steps": steps, **changes})


@pytest.fixture(scope="module")
def trained_set(tiny_run):
    return tiny_run(**TRAINED_RUN)


@pytest.fixture
def mtfl(shared_data, monkeypatch):
    monkeypatch.setenv("HEATMAPNET_DATA", str(shared_data))
    return shared_data


@pytest.fixture(scope="module")
def trained_run(shared_data, tmp_path_factory, trained_set):
    """One trained run shared by the tests that read it (they only read it)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HEATMAPNET_DATA", str(shared_data))
        assert main(["train", "mtfl5", "--out", str(out), "--set", *trained_set]) == 0
    return out


def _weights(path):
    return load_checkpoint(path).model


def _mtfl_faces(data: Path, count: int):
    """The first ``count`` faces of MTFL's test.txt, parsed here: image paths and the five points
    (N, 5, 2) in 0-based pixels (each line: path, x1..x5, y1..y5)."""
    lines = [line.split() for line in (data / "mtfl5" / "test.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")][:count]
    paths = [data / "mtfl5" / fields[0] for fields in lines]
    points = np.array([[[float(fields[1 + i]), float(fields[6 + i])] for i in range(5)] for fields in lines])
    return paths, points


def _tight_box(points):
    """[x, y, w, h]: the continuous extent of the points (x = min x, w = max x - min x)."""
    low, high = points.min(axis=0), points.max(axis=0)
    return [float(low[0]), float(low[1]), float(high[0] - low[0]), float(high[1] - low[1])]


def _nme(predicted, truth):
    """Mean point error over the inter-ocular distance (left eye 0, right eye 1), per face."""
    errors = np.linalg.norm(predicted - truth, axis=2).mean(axis=1)
    return errors / np.linalg.norm(truth[:, 0] - truth[:, 1], axis=1)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ----------------------------------------------------------------------------------------------
# configs
# ----------------------------------------------------------------------------------------------
def test_an_unknown_config_key_is_an_error_listing_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown config key 'train.stepz'.*'steps'"):
        load_config(None, ["train.stepz=3"])
    with pytest.raises(ConfigError, match=r"could not be converted to Integer \(key 'train.steps'\)"):
        load_config(None, ["train.steps=many"])
    with pytest.raises(ConfigError, match="must look like key.sub=value"):
        load_config(None, ["train.steps"])


def _leaves(value, prefix=()):
    """(dotted key path, value) of every leaf of a parsed YAML mapping (list items by index)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, prefix + (str(key),))
    elif isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        for index, item in enumerate(value):
            yield from _leaves(item, prefix + (str(index),))
    else:
        yield prefix, value


def test_every_shipped_config_loads_with_each_value_its_file_sets(monkeypatch):
    """Each file read here with plain YAML: every value it sets is the loaded config's value (the
    ``${data_root:}`` of data paths resolved to HEATMAPNET_DATA), and a setting no file names keeps
    the schema's default."""
    monkeypatch.setenv("HEATMAPNET_DATA", "/somewhere/data")
    paths = sorted((REPO / "configs").glob("*.yaml"))
    assert {"synthetic_faces", "synthetic_people", "ytf68", "mtfl5", "lsp", "coco", "coco_custom"} <= \
        {p.stem for p in paths}
    defaults = OmegaConf.to_container(OmegaConf.structured(RunConfig))
    for path in paths:
        config = load_config(path.stem)
        written = list(_leaves(yaml.safe_load(path.read_text())))
        assert written, path
        for keys, value in written:
            loaded = OmegaConf.select(config, ".".join(keys))
            loaded = OmegaConf.to_container(loaded) if OmegaConf.is_config(loaded) else loaded
            if isinstance(value, str):
                value = value.replace("${data_root:}", "/somewhere/data")
            assert loaded == value, (path.name, ".".join(keys))
        named = {keys for keys, _ in written}
        for keys, value in _leaves(defaults):
            if not any(keys[:len(other)] == other or other[:len(keys)] == keys for other in named):
                assert OmegaConf.select(config, ".".join(keys)) == value, (path.name, ".".join(keys))


def test_the_command_line_reports_config_errors_without_a_traceback(capsys, tmp_path):
    assert main(["train", "--set", "model.backbon=resnet18", "--out", str(tmp_path)]) == 2
    assert "unknown config key 'model.backbon'" in capsys.readouterr().err


def test_coco_custom_names_the_missing_annotation_file(tmp_path):
    config = load_config("coco_custom", ["data.num_workers=0"])
    with pytest.raises(ValueError, match=r"data.train.ann_file is not set"):
        Trainer(config, tmp_path)


# ----------------------------------------------------------------------------------------------
# schedule and sampling
# ----------------------------------------------------------------------------------------------
def test_learning_rate_warms_up_linearly_then_follows_a_cosine_to_zero():
    assert learning_rate_factor(0, 10, 110) == pytest.approx(0.1)
    assert learning_rate_factor(9, 10, 110) == pytest.approx(1.0)
    assert learning_rate_factor(60, 10, 110) == pytest.approx(0.5)
    assert learning_rate_factor(110, 10, 110) == pytest.approx(0.0)


def test_two_ranks_split_each_global_batch_exactly_as_one_process_sees_it():
    whole = list(StepBatchSampler(10, 4, DistInfo(0, 1), seed=3, start_step=0, total_steps=6))
    halves = [list(StepBatchSampler(10, 4, DistInfo(r, 2), seed=3, start_step=0, total_steps=6)) for r in (0, 1)]
    assert [a + b for a, b in zip(*halves)] == whole
    resumed = list(StepBatchSampler(10, 4, DistInfo(0, 1), seed=3, start_step=4, total_steps=6))
    assert resumed == whole[4:]
    first_epoch = [index for batch in whole for index, epoch in batch if epoch == 0]
    assert sorted(first_epoch) == list(range(10))  # each epoch is a permutation


# ----------------------------------------------------------------------------------------------
# training behaviour
# ----------------------------------------------------------------------------------------------
def test_training_writes_the_run_and_its_final_metrics(mtfl, trained_run):
    out = trained_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == TRAINED_STEPS
    assert {"nme", "failure_rate@0.1", "auc@0.1", "num_samples"} <= set(metrics["final"])
    assert metrics["final"]["num_samples"] == 16
    for name in ("config.yaml", "last.pt", "best.pt", "metrics.jsonl"):
        assert (out / name).is_file(), name
    assert load_config(str(out / "config.yaml")).train.steps == TRAINED_STEPS  # the resolved config reloads
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss" in r] == [5, 10, 15, 20, 25, 30]  # train.log_every=5
    assert any((out / "tensorboard").iterdir())
    # one evaluation (at the end): it is the best, and best.pt / last.pt are that final model
    final_nme = metrics["final"]["nme"]
    assert metrics["best"] == {"name": "nme", "value": final_nme, "step": TRAINED_STEPS}
    last, best = load_checkpoint(out / "last.pt"), load_checkpoint(out / "best.pt")
    assert last.step == best.step == TRAINED_STEPS and last.best == metrics["best"]
    for name in last.model:
        torch.testing.assert_close(last.model[name], best.model[name], rtol=0, atol=0, msg=name)


def test_the_reported_nme_is_the_saved_models_error_on_the_validation_faces(mtfl, trained_run):
    """Recomputed here from the annotation file and the checkpoint's predictions, face by face."""
    paths, truth = _mtfl_faces(mtfl, 16)
    predictor = Predictor(trained_run / "last.pt")
    predicted = np.stack([np.asarray(predictor(str(path), boxes=[_tight_box(points)])[0]["keypoints"])
                          for path, points in zip(paths, truth)])
    per_face = _nme(predicted, truth)
    final = json.loads((trained_run / "metrics.json").read_text())["final"]
    assert final["nme"] == pytest.approx(per_face.mean(), rel=1e-4)
    assert final["failure_rate@0.1"] == pytest.approx(np.mean(per_face > 0.1))
    assert final["auc@0.1"] == pytest.approx(np.mean(np.maximum(0.0, 1.0 - per_face / 0.1)), abs=1e-4)


def test_training_beats_the_box_centre_baseline_and_its_own_initialisation(mtfl, trained_run, tmp_path, trained_set):
    _, truth = _mtfl_faces(mtfl, 16)
    centres = np.stack([np.repeat([[b[0] + b[2] / 2, b[1] + b[3] / 2]], 5, axis=0) for b in map(_tight_box, truth)])
    centre_baseline = _nme(centres, truth).mean()  # every point at its box's centre: 0.62 on these faces
    assert centre_baseline == pytest.approx(0.616, abs=0.001)
    initial = Trainer(load_config("mtfl5", trained_set), tmp_path).evaluate()["nme"]  # same seed: the run's step 0
    trained = json.loads((trained_run / "metrics.json").read_text())["final"]["nme"]
    assert trained < 0.5 * centre_baseline
    assert trained < 0.5 * initial


def test_resume_continues_exactly_like_an_uninterrupted_run(mtfl, tmp_path, monkeypatch, tiny_overrides,
                                                            interrupted_run):
    overrides = tiny_overrides(steps=6, **{"train.checkpoint_every": 3})
    straight = Trainer(load_config("mtfl5", overrides), tmp_path / "straight")
    straight.run()

    interrupted = Trainer(load_config("mtfl5", overrides), tmp_path / "interrupted")
    interrupted_run(interrupted, steps=3)
    assert load_checkpoint(tmp_path / "interrupted" / "last.pt").step == 3
    resumed = Trainer(load_config("mtfl5", overrides), tmp_path / "interrupted")
    resumed.resume(tmp_path / "interrupted" / "last.pt")
    assert resumed.step == 3
    resumed.run()
    a, b = load_checkpoint(tmp_path / "straight" / "last.pt"), load_checkpoint(tmp_path / "interrupted" / "last.pt")
    assert a.step == b.step == 6 and a.best == b.best
    for name in a.model:
        torch.testing.assert_close(a.model[name], b.model[name], rtol=0, atol=0, msg=name)


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(mtfl, tmp_path, tiny_overrides):
    trainer = Trainer(load_config("mtfl5", tiny_overrides(steps=5, **{"train.checkpoint_every": 1})), tmp_path)
    real_criterion = trainer.criterion
    calls = {"n": 0}

    def turns_nan(*args):
        calls["n"] += 1
        value = real_criterion(*args)
        return value * float("nan") if calls["n"] == 3 else value

    turns_nan.target_keys = real_criterion.target_keys
    trainer.criterion = turns_nan
    with pytest.raises(NonFiniteLossError, match=r"step 3: the loss is nan.*last.pt \(left as it was\)"):
        trainer.run()
    state = load_checkpoint(tmp_path / "last.pt")
    assert state.step == 2
    assert all(torch.isfinite(v).all() for v in state.model.values() if v.is_floating_point())
    # the parameters in memory are still step 2's: the optimiser did not step on the nan
    # (batch-norm running statistics are buffers, moved by step 3's forward pass, so not compared)
    for name, value in trainer.model.named_parameters():
        torch.testing.assert_close(value, state.model[name], rtol=0, atol=0, msg=name)


@pytest.mark.slow
def test_two_cpu_processes_agree_with_one_on_the_same_global_batch(mtfl, tmp_path, tiny_overrides):
    # GroupNorm head and a LayerNorm backbone: no batch statistics, so the split cannot matter.
    overrides = tiny_overrides(steps=2, **{"model.backbone": "convnext_atto", "model.head_norm": "group",
                                           "loss.name": "mse", "data.input_size": "[32,32]"})
    env = {**os.environ, "HEATMAPNET_DATA": str(mtfl), "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "heatmapnet", "train", "mtfl5", "--out", str(tmp_path / "one"),
                             "--set", *overrides], env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    double = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                             f"--master_port={_free_port()}", "-m", "heatmapnet", "train", "mtfl5",
                             "--out", str(tmp_path / "two"), "--set", *overrides],
                            env=env, capture_output=True, text=True, timeout=300)
    assert double.returncode == 0, double.stderr[-2000:]
    a, b = _weights(tmp_path / "one" / "last.pt"), _weights(tmp_path / "two" / "last.pt")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5, msg=name)
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())["final"]
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())["final"]
    assert one["nme"] == pytest.approx(two["nme"], rel=1e-3)
    assert two["num_samples"] == 16  # every validation sample, gathered from both ranks


# ----------------------------------------------------------------------------------------------
# evaluation and prediction from a checkpoint
# ----------------------------------------------------------------------------------------------
def test_eval_writes_the_predictions_the_predictor_makes_for_each_face(mtfl, trained_run, tmp_path, trained_set):
    checkpoint = trained_run / "last.pt"
    assert main(["eval", "mtfl5", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "eval"),
                 "--set", *trained_set]) == 0
    summary = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    trained = json.loads((trained_run / "metrics.json").read_text())["final"]
    assert summary["step"] == TRAINED_STEPS and summary["metrics"]["num_samples"] == 16
    assert summary["metrics"]["nme"] == pytest.approx(trained["nme"], rel=1e-6)  # same weights, same faces
    predictions = json.loads((tmp_path / "eval" / "predictions.json").read_text())
    paths, truth = _mtfl_faces(mtfl, 16)
    assert [Path(p["image_path"]).resolve() for p in predictions] == [p.resolve() for p in paths]
    predictor = Predictor(checkpoint)
    for entry, path, points in zip(predictions, paths, truth):
        triples = np.asarray(entry["keypoints"]).reshape(5, 3)  # x, y, score; rounded to 3 decimals
        mine = predictor(str(path), boxes=[_tight_box(points)])[0]
        np.testing.assert_allclose(triples[:, :2], mine["keypoints"], rtol=0, atol=2e-3)
        np.testing.assert_allclose(triples[:, 2], mine["scores"], rtol=0, atol=2e-3)
        assert entry["score"] == pytest.approx(np.mean(mine["scores"]), abs=1e-5)


def test_predict_on_a_whole_image_reads_the_maps_of_the_hand_derived_crop(mtfl, trained_run):
    image = mtfl / "mtfl5" / "AFLW" / sorted(os.listdir(mtfl / "mtfl5" / "AFLW"))[0]
    predictor = Predictor(trained_run / "last.pt")
    # No box: the whole 80 x 80 image is the box [0, 0, 80, 80], centre (40, 40), padded by 1.25 to
    # 100 x 100 and scaled onto the 64 x 64 input: zoom 0.64, centre to pixel 31.5, so
    # u = 0.64 x + (31.5 - 0.64 * 40) = 0.64 x + 5.9. Heatmap pixel i (stride 4) sits at input 4 i + 1.5.
    matrix = np.array([[0.64, 0.0, 5.9], [0.0, 0.64, 5.9]])
    matrices, boxes = predictor.mode.image_matrices((80, 80), None, (64, 64))
    np.testing.assert_allclose(matrices[0], matrix, atol=1e-12)
    assert boxes == [[0.0, 0.0, 80.0, 80.0]]
    pixels = read_image(image, predictor.exif_orientation)  # as the predictor reads the checkpoint's images
    maps = predictor.heatmaps(torch.from_numpy(to_input_tensor(warp_image(pixels, matrix, (64, 64))))[None])[0]
    assert maps.shape == (5, 16, 16)
    peak = maps.reshape(5, -1).argmax(dim=1)
    peak_xy = torch.stack([peak % 16, peak // 16], dim=1).double().numpy()
    peak_in_image = (4.0 * peak_xy + 1.5 - 5.9) / 0.64

    whole = predictor(str(image))
    assert len(whole) == 1 and whole[0]["bbox"] == [0.0, 0.0, 80.0, 80.0]
    assert whole[0]["keypoint_names"] == ["left_eye", "right_eye", "nose", "left_mouth_corner", "right_mouth_corner"]
    assert whole[0]["scores"] == pytest.approx(maps.amax(dim=(1, 2)).tolist(), abs=0)  # scores: the map maxima
    # DARK moves each point at most one heatmap pixel (6.25 image pixels) from its peak
    offset = np.abs(np.asarray(whole[0]["keypoints"]) - peak_in_image)
    assert np.all(offset <= 4.0 / 0.64 + 1e-6)
    # without refinement the point is the peak pixel itself, mapped back through the crop
    predictor.codec = dataclasses.replace(predictor.codec, refine="none")
    plain = predictor(str(image))[0]
    np.testing.assert_allclose(plain["keypoints"], peak_in_image, rtol=0, atol=1e-9)


def _hand_framed_keypoints(checkpoint, image_path, zoom, shift):
    """The keypoints (K, 2, image pixels) and scores (K,) of the crop u = zoom x + shift (the
    crop's matrix worked out by hand), computed here without the predictor: the image read by
    OpenCV, the checkpoint's weights in a freshly built model, its maps decoded by the codec and
    mapped back through the inverse of that matrix."""
    loaded = load_checkpoint(checkpoint)
    config = config_from_dict(loaded.config, f"{checkpoint}: its config", validate=False)
    model = build_model(config, loaded.scheme)
    model.load_state_dict(loaded.model)
    model.eval()
    matrix = np.array([[zoom, 0.0, shift[0]], [0.0, zoom, shift[1]]])
    pixels = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    with torch.no_grad():
        maps = model.heatmaps(torch.from_numpy(to_input_tensor(warp_image(pixels, matrix, (64, 64))))[None])
    decoded = build_codec(config, loaded.scheme).decode(maps)
    points = (decoded.coordinates[0].double().numpy() - np.asarray(shift)) / zoom
    return points, decoded.scores[0].double().numpy()


def test_the_predict_command_writes_the_keypoints_of_the_hand_derived_crops(mtfl, trained_run, tmp_path, capsys):
    checkpoint = trained_run / "last.pt"
    names = sorted(os.listdir(mtfl / "mtfl5" / "AFLW"))[:2]
    images = [str(mtfl / "mtfl5" / "AFLW" / name) for name in names]
    # one image per forward pass, as computed below (a batch of both differs in float rounding)
    assert main(["predict", *images, "--checkpoint", str(checkpoint), "--out", str(tmp_path / "p.json"),
                 "--batch-size", "1"]) == 0
    assert capsys.readouterr().out.strip() == f"keypoints of 2 images written to {tmp_path / 'p.json'}"
    written = json.loads((tmp_path / "p.json").read_text())
    assert [entry["image_path"] for entry in written] == images
    for entry, image in zip(written, images):
        # no box: the whole 80 x 80 image, padded 1.25 onto the 64 px input: u = 0.64 x + 5.9
        assert cv2.imread(image).shape[:2] == (80, 80)
        points, scores = _hand_framed_keypoints(checkpoint, image, 0.64, (5.9, 5.9))
        (face,) = entry["predictions"]
        assert face["bbox"] == [0.0, 0.0, 80.0, 80.0]
        np.testing.assert_allclose(face["keypoints"], points, rtol=0, atol=1e-4)
        np.testing.assert_allclose(face["scores"], scores, rtol=0, atol=1e-6)

    boxes = {images[0]: [[10, 10, 40, 40], [30, 20, 30, 40]]}
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    assert main(["predict", images[0], "--checkpoint", str(checkpoint), "--boxes", str(tmp_path / "boxes.json")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert len(printed) == 1 and printed[0]["image_path"] == images[0]
    boxed = printed[0]["predictions"]
    assert [entry["bbox"] for entry in boxed] == [[10.0, 10.0, 40.0, 40.0], [30.0, 20.0, 30.0, 40.0]]
    # each box squared to its longer side (40), padded 1.25 to 50 px: zoom 64 / 50 = 1.28, the box
    # centre (x + w/2, y + h/2) onto the input's centre 31.5: (30, 30) -> shift -6.9; (45, 40) -> -26.1, -19.7
    for entry, shift in zip(boxed, [(-6.9, -6.9), (-26.1, -19.7)]):
        points, scores = _hand_framed_keypoints(checkpoint, images[0], 1.28, shift)
        np.testing.assert_allclose(entry["keypoints"], points, rtol=0, atol=1e-3)
        np.testing.assert_allclose(entry["scores"], scores, rtol=0, atol=1e-5)
    assert not np.allclose(boxed[0]["keypoints"], boxed[1]["keypoints"], atol=1.0)

    predictor = Predictor(checkpoint)
    with pytest.raises(FileNotFoundError, match="no_such.jpg"):
        predictor(str(tmp_path / "no_such.jpg"))
    assert main(["predict", str(tmp_path / "no_such.jpg"), "--checkpoint", str(checkpoint)]) == 2
    assert "no_such.jpg" in capsys.readouterr().err
