"""The pre-flight check (heatmapnet.preflight): bad images found and dropped or reported before
the first step, every config key validated, the run directory tested."""
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import timm
from omegaconf import OmegaConf

from heatmapnet import preflight
from heatmapnet.build import build_model
from heatmapnet.config import load_config
from heatmapnet.data.mosaic import MosaicPeople
from heatmapnet.data.records import Record
from heatmapnet.distributed import DistInfo
from heatmapnet.engine import Trainer, train_from_config
from heatmapnet.metadata import load_scheme
from heatmapnet.preflight import (PreflightError, check_components, check_run_directory, checked_run_records,
                                  image_problem, run_preflight)

SIZE = 64  # every test image is SIZE x SIZE
MTFL5_POINTS = [[20, 24], [44, 24], [32, 34], [24, 46], [40, 46]]  # eyes, nose, mouth corners
TINY_MODEL = ["model.backbone=mobilenetv3_small_050", "model.head_channels=16", "data.input_size=[64,64]",
              "data.num_workers=0", "train.threads=1", "train.batch_size=4"]
SYNTHETIC = TINY_MODEL + ["train.steps=2", "data.train.num_samples=8", "data.val.num_samples=4"]


def _jpeg(size: int = SIZE, seed: int = 0) -> bytes:
    image = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


#: a bad image's name -> (its bytes, a phrase its problem must hold)
BAD_IMAGES = {
    "empty.jpg": (b"", "empty file (0 bytes)"),
    "cut.jpg": (_jpeg(seed=1)[:-60], "truncated JPEG (no end-of-image marker"),
    "noise.jpg": (b"this is no image " * 20, "image file is corrupt or not an image"),
    "small.jpg": (_jpeg(size=48, seed=2), "image is 48x48 but its annotation says width=64, height=64"),
}


def _coco_set(folder: Path, good: int, bad=(), points=MTFL5_POINTS, name: str = "ann.json") -> Path:
    """A COCO json of ``good`` valid SIZE x SIZE JPEGs and the named ``bad`` ones, each annotated
    SIZE x SIZE with one instance of ``points``."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"good{i}.jpg" for i in range(good)] + list(bad)
    for i, file_name in enumerate(names):
        data = BAD_IMAGES[file_name][0] if file_name in BAD_IMAGES else _jpeg(seed=10 + i)
        (folder / file_name).write_bytes(data)
    keypoints = [value for x, y in points for value in (x, y, 2)]
    coco = {"images": [{"id": i + 1, "file_name": n, "width": SIZE, "height": SIZE} for i, n in enumerate(names)],
            "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1, "keypoints": keypoints,
                             "num_keypoints": len(points), "bbox": [14, 18, 36, 34], "area": 36 * 34, "iscrowd": 0}
                            for i in range(len(names))],
            "categories": [{"id": 1, "name": "face", "keypoints": [f"p{k}" for k in range(len(points))]}]}
    path = folder / name
    path.write_text(json.dumps(coco))
    return path


def _files_config(train_json: Path, val_json: Path, *extra, validate: bool = True):
    overrides = ["data.scheme=mtfl5", "data.train.source=files", "data.train.format=coco",
                 f"data.train.ann_file={train_json}", "data.val.source=files", "data.val.format=coco",
                 f"data.val.ann_file={val_json}", "train.steps=2", "train.eval_every=2", *TINY_MODEL, *extra]
    return load_config("synthetic_faces", overrides, validate=validate)


# ----------------------------------------------------------------------------------------------
# one image
# ----------------------------------------------------------------------------------------------
def _record(path: Path, width: int = SIZE, height: int = SIZE) -> Record:
    return Record(image_path=str(path), width=width, height=height, instances=[])


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_each_kind_of_bad_image_is_named_with_its_reason(tmp_path, name):
    data, phrase = BAD_IMAGES[name]
    (tmp_path / name).write_bytes(data)
    problem = image_problem(_record(tmp_path / name))
    assert problem is not None and str(tmp_path / name) in problem and phrase in problem


def test_a_truncated_jpeg_that_opencv_decodes_is_still_refused(tmp_path):
    path = tmp_path / "cut.jpg"
    path.write_bytes(_jpeg(seed=3)[:-10])  # the end-of-image marker and the last bytes of the scan are gone
    assert cv2.imread(str(path)) is not None  # OpenCV returns an image (with a warning): training would use it
    assert "truncated JPEG" in image_problem(_record(path))


def test_good_images_pass_also_with_bytes_after_the_end_marker(tmp_path):
    (tmp_path / "good.jpg").write_bytes(_jpeg(seed=4))
    (tmp_path / "padded.jpg").write_bytes(_jpeg(seed=5) + b"\x00" * 16)  # cameras pad files like this
    (tmp_path / "good.png").write_bytes(cv2.imencode(".png", np.zeros((SIZE, SIZE, 3), np.uint8))[1].tobytes())
    for name in ("good.jpg", "padded.jpg", "good.png"):
        assert image_problem(_record(tmp_path / name)) is None, name


def test_a_truncated_png_and_a_missing_file(tmp_path):
    png = cv2.imencode(".png", np.full((SIZE, SIZE, 3), 7, np.uint8))[1].tobytes()
    (tmp_path / "cut.png").write_bytes(png[:-12])  # the IEND chunk is gone
    assert "corrupt or not an image" in image_problem(_record(tmp_path / "cut.png"))
    assert image_problem(_record(tmp_path / "gone.jpg")) == f"image file not found: {tmp_path / 'gone.jpg'}"


# ----------------------------------------------------------------------------------------------
# splits of files
# ----------------------------------------------------------------------------------------------
def test_without_skip_invalid_every_bad_image_is_a_problem_and_the_first_is_the_error(tmp_path):
    train = _coco_set(tmp_path / "train", good=5, bad=sorted(BAD_IMAGES))
    val = _coco_set(tmp_path / "val", good=2)
    report = run_preflight(_files_config(train, val), tmp_path / "run", progress=False)
    assert len(report.problems) == len(BAD_IMAGES)
    for problem, name in zip(report.problems, sorted(BAD_IMAGES)):  # in the json's order
        assert problem.startswith("data.train: ") and str(tmp_path / "train" / name) in problem
        assert BAD_IMAGES[name][1] in problem and problem.endswith("data.skip_invalid=true trains without such images")
    assert report.train.images_opened == 5 + len(BAD_IMAGES) and report.val.images_opened == 2
    with pytest.raises(PreflightError) as caught:
        report.raise_for_problems()
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path / "train" / "cut.jpg") in message  # "cut.jpg" sorts first
    assert message.endswith(f"(and {len(BAD_IMAGES) - 1} more problem(s): `heatmapnet check` lists them all)")


def test_with_skip_invalid_bad_images_are_dropped_and_listed(tmp_path):
    train = _coco_set(tmp_path / "train", good=5, bad=sorted(BAD_IMAGES))
    val = _coco_set(tmp_path / "val", good=2, bad=["empty.jpg"])
    report = run_preflight(_files_config(train, val, "data.skip_invalid=true"), tmp_path / "run", progress=False)
    assert report.ok, report.problems
    assert [Path(r.image_path).name for r in report.train.records] == [f"good{i}.jpg" for i in range(5)]
    assert [Path(r.image_path).name for r in report.val.records] == ["good0.jpg", "good1.jpg"]
    assert report.train.num_images == 5 and report.train.num_instances == 5
    assert len(report.skipped) == len(BAD_IMAGES) + 1
    for name in BAD_IMAGES:
        assert any(str(tmp_path / "train" / name) in line and line.startswith("data.train: ")
                   for line in report.skipped), name
    summary = report.summary()
    assert "data.train  5 images, 5 instances; 9 image files opened and decoded" in summary
    assert f"skipped     {len(BAD_IMAGES) + 1}:" in summary and "would fail  nothing" in summary


def test_a_mosaic_split_is_made_of_the_good_images_only(tmp_path):
    train = _coco_set(tmp_path / "train", good=4, bad=["empty.jpg", "noise.jpg"])
    val = _coco_set(tmp_path / "val", good=2)
    config = _files_config(train, val, "data.skip_invalid=true", "data.train.source=mosaic",
                           "data.train.num_samples=3", "data.train.canvas=[64,64]")
    report = run_preflight(config, tmp_path / "run", progress=False)
    assert report.ok, report.problems
    mosaics = report.train.records
    assert isinstance(mosaics, MosaicPeople) and len(mosaics) == 3
    assert sorted(Path(r.image_path).name for r in mosaics.sources) == [f"good{i}.jpg" for i in range(4)]


def test_a_split_whose_point_count_is_not_the_schemes_is_a_problem(tmp_path):
    train = _coco_set(tmp_path / "train", good=2)
    val = _coco_set(tmp_path / "val", good=2, points=MTFL5_POINTS[:4])
    report = run_preflight(_files_config(train, val), tmp_path / "run", progress=False)
    assert report.problems == [f"data.val: {tmp_path / 'val' / 'good0.jpg'} has 4 points per instance, the scheme "
                               "mtfl5 has 5"]


def test_a_generated_split_of_another_layout_is_a_problem_and_opens_no_files(tmp_path):
    config = load_config("synthetic_faces", SYNTHETIC + ["data.val.source=synthetic_faces5"])
    report = run_preflight(config, tmp_path / "run", progress=False)
    assert report.problems == ["data.val: synthetic://faces/seed1/000000 has 5 points per instance, the scheme "
                               "ibug68 has 68"]
    assert report.train.images_opened == 0 and report.train.num_images == 8


def test_an_unreadable_annotation_file_is_a_problem_naming_the_split(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    val = _coco_set(tmp_path / "val", good=1)
    report = run_preflight(_files_config(tmp_path / "broken.json", val), tmp_path / "run", progress=False)
    assert len(report.problems) == 1
    assert report.problems[0].startswith(f"data.train: {tmp_path / 'broken.json'}: not valid JSON")


# ----------------------------------------------------------------------------------------------
# the trainer trains on what passed
# ----------------------------------------------------------------------------------------------
def test_a_run_stops_before_its_first_step_naming_a_bad_image(tmp_path):
    train = _coco_set(tmp_path / "train", good=3, bad=["empty.jpg"])
    val = _coco_set(tmp_path / "val", good=2)
    with pytest.raises(PreflightError) as caught:
        train_from_config(_files_config(train, val), tmp_path / "run")
    assert str(caught.value) == (f"data.train: {tmp_path / 'train' / 'empty.jpg'}: empty file (0 bytes), not an image; "
                                 "data.skip_invalid=true trains without such images")
    assert not (tmp_path / "run" / "last.pt").exists()


def test_building_a_trainer_opens_no_image(tmp_path):
    # the pre-flight is the train command's (checked_run_records); a trainer built without its
    # records reads the annotations alone: its bad images are no error until a batch draws them
    train = _coco_set(tmp_path / "train", good=3, bad=["empty.jpg"])
    val = _coco_set(tmp_path / "val", good=2, bad=["noise.jpg"])
    trainer = Trainer(_files_config(train, val), tmp_path / "run")
    assert len(trainer.data.train_set) == 4 and len(trainer.data.val_records) == 3


def test_with_skip_invalid_the_trainer_never_draws_a_bad_image(tmp_path):
    # 2 steps of 4 draw all 5 training images (and evaluation reads every val image): before the
    # pre-flight check, the empty and the truncated file crashed the run when first drawn
    train = _coco_set(tmp_path / "train", good=3, bad=["empty.jpg", "cut.jpg"])
    val = _coco_set(tmp_path / "val", good=2, bad=["noise.jpg"])
    config = _files_config(train, val, "data.skip_invalid=true")
    trainer = Trainer(config, tmp_path / "run", records=checked_run_records(config, tmp_path / "run"))
    assert len(trainer.data.train_set) == 3 and len(trainer.data.val_records) == 2
    summary = trainer.run()
    assert summary["steps"] == 2 and (tmp_path / "run" / "last.pt").is_file()


def test_eval_opens_every_val_image_first_and_names_a_bad_one(tmp_path, capsys):
    from heatmapnet.checkpoint import save_checkpoint
    from heatmapnet.cli import main

    train = _coco_set(tmp_path / "train", good=2)
    config = _files_config(train, train)
    trainer = Trainer(config, tmp_path / "run")  # a model of this config, its weights as they start
    val = _coco_set(tmp_path / "val", good=2, bad=["noise.jpg"])
    save_checkpoint(tmp_path / "w.pt", config=OmegaConf.to_container(config), scheme=trainer.data.scheme,
                    model=trainer.model.state_dict(), step=0)
    overrides = [f"data.train.ann_file={train}", f"data.val.ann_file={val}", "data.scheme=mtfl5",
                 "data.train.format=coco", "data.val.format=coco", "data.train.source=files", "data.val.source=files",
                 *TINY_MODEL]
    args = ["eval", "synthetic_faces", "--checkpoint", str(tmp_path / "w.pt"), "--out", str(tmp_path / "e"),
            "--set", *overrides]
    assert main(args) == 2
    error = capsys.readouterr().err.strip()
    assert error == (f"heatmapnet eval: data.val: image file is corrupt or not an image: {tmp_path / 'val' / 'noise.jpg'}"
                     "; data.skip_invalid=true trains without such images")
    # with skip_invalid the bad image is left out and listed; the two good ones are evaluated
    assert main(args + ["data.skip_invalid=true"]) == 0
    printed = capsys.readouterr().out
    assert "data.val: 1 sample(s) skipped" in printed and "noise.jpg" in printed
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["metrics"]["num_samples"] == 2


# ----------------------------------------------------------------------------------------------
# the config
# ----------------------------------------------------------------------------------------------
CONFIG_PROBLEMS = [  # an override -> the one problem the check reports
    ("eval.refine=darkk", "eval.refine='darkk': choose one of ['none', 'quarter', 'dark']"),
    ("loss.name=l1", "unknown loss.name 'l1'; choose one of ['awing', 'focal', 'mse', 'retina_focal']"),
    ("model.head=unet", "unknown model.head 'unet'; choose one of ['deconv', 'fpn']"),
    ("model.backbone=resnet_nope", "model.backbone='resnet_nope': not a timm model (see timm.list_models())"),
    ("target.sigma_policy=wide", "unknown target.sigma_policy 'wide'; choose one of ['fixed', 'oks', 'radius']"),
    ("target.radius_formula=cornernet", "target: formula must be one of ['centernet', 'exact'], got 'cornernet'"),
    ("train.optimizer=sgd", "train.optimizer='sgd': choose one of ['adam', 'adamw']"),
    ("data.mode=sideways", "unknown data.mode 'sideways'; choose one of ['bottomup', 'multi', 'topdown']"),
    ("model.pretrained_path=/no/such/weights.pth", "model.pretrained_path: weight file not found: "
                                                   "/no/such/weights.pth"),
    ("train.batch_size=0", "train.batch_size=0: must be >= 1"),
    ("train.eval_every=0", "train.eval_every=0: must be >= 1"),
    ("train.checkpoint_every=0", "train.checkpoint_every=0: must be >= 1"),
    ("train.steps=-3", "train.steps=-3: must be >= 1"),
    ("data.input_size=[64]", "data.input_size=[64]: expected [width, height], two positive integers"),
    ("data.input_size=[0,64]", "data.input_size=[0, 64]: expected [width, height], two positive integers"),
    ("data.input_size=[66,64]", "data.input_size=[66, 64]: width and height must divide by 4, the models' "
                                "heatmap stride"),
]


@pytest.mark.parametrize("override, problem", CONFIG_PROBLEMS, ids=[override for override, _ in CONFIG_PROBLEMS])
def test_every_config_key_a_run_uses_is_checked_up_front(override, problem):
    report = check_components(load_config("synthetic_faces", SYNTHETIC + [override], validate=False))
    assert report.problems == [problem]


def test_a_good_config_has_no_problems_and_counts_the_models_parameters():
    config = load_config("synthetic_faces", SYNTHETIC)
    report = check_components(config)
    assert report.problems == []
    assert report.scheme.name == "ibug68"
    # counted here: the timm backbone as timm builds it, plus the FPN head by its layers: a 1x1
    # lateral (weights + bias) onto 16 channels from each backbone level at stride 4 or more, the
    # 3x3 smoothing convolution (no bias) and its batch norm (weight, bias), the 1x1 classifier onto
    # the 68 ibug68 heatmaps
    assert config.model.head == "fpn" and config.model.head_norm == "batch"
    backbone = timm.create_model("mobilenetv3_small_050", features_only=True, pretrained=False)
    levels = [c for c, s in zip(backbone.feature_info.channels(), backbone.feature_info.reduction()) if s >= 4]
    assert len(levels) == 4
    width = 16
    head = sum(c * width + width for c in levels) + width * width * 9 + 2 * width + width * 68 + 68
    assert report.num_parameters == sum(p.numel() for p in backbone.parameters()) + head


def test_the_global_batch_must_divide_by_the_ranks():
    report = check_components(load_config("synthetic_faces", SYNTHETIC), world_size=3)
    assert report.problems == ["train.batch_size=4: must divide by the 3 DDP ranks"]
    assert check_components(load_config("synthetic_faces", SYNTHETIC), world_size=2).problems == []


def test_several_problems_are_all_reported():
    config = load_config("synthetic_faces", SYNTHETIC + ["train.batch_size=0", "eval.refine=x", "loss.name=l1"],
                         validate=False)
    assert check_components(config).problems == [
        "train.batch_size=0: must be >= 1", "eval.refine='x': choose one of ['none', 'quarter', 'dark']",
        "unknown loss.name 'l1'; choose one of ['awing', 'focal', 'mse', 'retina_focal']"]


# ----------------------------------------------------------------------------------------------
# the run directory
# ----------------------------------------------------------------------------------------------
def test_a_run_directory_that_is_a_file_or_under_a_file(tmp_path):
    (tmp_path / "taken").write_text("keep me")
    report = check_run_directory(tmp_path / "taken", checkpoint_bytes=1000)
    assert report.problems == [f"run directory {tmp_path / 'taken'} is an existing file, not a folder: choose "
                               "another --out"]
    report = check_run_directory(tmp_path / "taken" / "run", checkpoint_bytes=1000)
    assert report.problems == [f"run directory {tmp_path / 'taken' / 'run'} cannot be created or written: "
                               "Not a directory"]
    assert (tmp_path / "taken").read_text() == "keep me"


def test_the_check_alone_creates_nothing(tmp_path):
    report = check_run_directory(tmp_path / "a" / "b", checkpoint_bytes=1000, create=False)
    assert report.problems == [] and list(tmp_path.iterdir()) == []
    report = check_run_directory(tmp_path / "a" / "b", checkpoint_bytes=1000)
    assert report.problems == [] and (tmp_path / "a" / "b").is_dir() and list((tmp_path / "a" / "b").iterdir()) == []


def test_a_disk_without_room_for_the_checkpoints(tmp_path, monkeypatch):
    config = load_config("synthetic_faces", SYNTHETIC)
    parameters = sum(p.numel() for p in build_model(config, load_scheme("ibug68")).parameters())
    needed = 3 * parameters * 12 + 64 * 2 ** 20  # last.pt, best.pt, the temporary copy; 4-byte weights, 2 moments
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: usage._replace(free=needed - 1))
    report = run_preflight(config, tmp_path / "run", progress=False)
    assert report.run_directory.needed_bytes == needed
    assert len(report.problems) == 1 and report.problems[0].startswith(f"run directory {tmp_path / 'run'}: ")
    assert "free on its disk, the run needs about" in report.problems[0]
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: usage._replace(free=needed))
    assert run_preflight(config, tmp_path / "run", progress=False).ok


def test_ranks_other_than_0_write_nothing(tmp_path):
    config = load_config("synthetic_faces", SYNTHETIC)
    report = run_preflight(config, tmp_path / "run", dist=DistInfo(rank=1, world_size=2), progress=False)
    assert report.ok and report.run_directory is None and not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------------------------
# the cause, not the symptom (heatmapnet.causes)
# ----------------------------------------------------------------------------------------------
def _declare_size(ann: Path, file_name: str, width: int, height: int) -> int:
    """Set the declared width and height of ``file_name``'s images entry; returns its image id."""
    coco = json.loads(ann.read_text())
    entry = next(image for image in coco["images"] if image["file_name"] == file_name)
    entry["width"], entry["height"] = width, height
    ann.write_text(json.dumps(coco))
    return entry["id"]


def test_a_halved_declared_size_is_named_before_the_points_it_puts_outside(tmp_path):
    train = _coco_set(tmp_path / "train", good=4)
    image_id = _declare_size(train, "good2.jpg", SIZE // 2, SIZE // 2)  # the file stays 64 x 64
    val = _coco_set(tmp_path / "val", good=2)
    report = run_preflight(_files_config(train, val), tmp_path / "run", progress=False)
    image = tmp_path / "train" / "good2.jpg"
    assert report.problems[0] == (f"data.train: {image}: image is {SIZE}x{SIZE} but its annotation says "
                                  f"width={SIZE // 2}, height={SIZE // 2} ({train}, image id {image_id})")
    # the reader's refusal, the symptom, comes after it
    assert len(report.problems) == 2 and "lies far outside the 32x32 image" in report.problems[1]
    with pytest.raises(PreflightError) as caught:
        report.raise_for_problems()
    assert str(caught.value).startswith(report.problems[0] + " (and 1 more problem(s)")


def test_a_declared_size_the_reader_accepts_names_the_record_too(tmp_path):
    train = _coco_set(tmp_path / "train", good=3)
    image_id = _declare_size(train, "good1.jpg", SIZE - 4, SIZE - 4)  # every point still inside
    val = _coco_set(tmp_path / "val", good=2)
    report = run_preflight(_files_config(train, val), tmp_path / "run", progress=False)
    assert report.problems == [f"data.train: {tmp_path / 'train' / 'good1.jpg'}: image is 64x64 but its annotation "
                               f"says width=60, height=60 ({train}, image id {image_id}); data.skip_invalid=true "
                               "trains without such images"]


def test_a_file_both_unreadable_and_of_another_size_leads_with_unreadable(tmp_path):
    train = _coco_set(tmp_path / "train", good=2)
    (tmp_path / "train" / "good1.jpg").write_bytes(_jpeg(size=48, seed=7)[:-60])  # cut short, and 48 x 48
    val = _coco_set(tmp_path / "val", good=2)
    report = run_preflight(_files_config(train, val), tmp_path / "run", progress=False)
    image = tmp_path / "train" / "good1.jpg"
    assert len(report.problems) == 2
    assert report.problems[0].startswith(f"data.train: {image}: truncated JPEG")
    assert report.problems[1].startswith(f"data.train: {image}: image is 48x48 but its annotation says width=64")


def test_a_problem_of_the_file_both_splits_use_is_listed_once_naming_both(tmp_path):
    both = _coco_set(tmp_path / "data", good=3, bad=["empty.jpg"])
    report = run_preflight(_files_config(both, both), tmp_path / "run", progress=False)
    assert report.problems == [f"data.train, data.val: {tmp_path / 'data' / 'empty.jpg'}: empty file (0 bytes), not "
                               "an image; data.skip_invalid=true trains without such images"]
    assert report.train.problems == [report.problems[0].replace("data.train, data.val", "data.train")]
    # a refused sample of the shared json too, after its cause
    image_id = _declare_size(both, "good0.jpg", SIZE // 2, SIZE // 2)
    report = run_preflight(_files_config(both, both), tmp_path / "run", progress=False)
    assert report.problems[0].startswith(f"data.train, data.val: {tmp_path / 'data' / 'good0.jpg'}: image is 64x64 "
                                         f"but its annotation says width=32, height=32 ({both}, image id {image_id})")
    assert len(report.problems) == 2 and report.problems[1].startswith(f"data.train, data.val: {both}, annotation id")


def test_with_skip_invalid_a_sample_refused_for_its_points_is_listed_with_its_declared_size(tmp_path):
    train = _coco_set(tmp_path / "train", good=4)
    _declare_size(train, "good3.jpg", SIZE // 2, SIZE // 2)
    val = _coco_set(tmp_path / "val", good=2)
    with pytest.warns(UserWarning, match="skipped 1 invalid sample"):
        report = run_preflight(_files_config(train, val, "data.skip_invalid=true"), tmp_path / "run", progress=False)
    assert report.ok and report.train.num_images == 3
    assert report.train.skipped[0].startswith(f"{tmp_path / 'train' / 'good3.jpg'}: image is 64x64 but its annotation "
                                              "says width=32, height=32")
    assert "lies far outside" in report.train.skipped[1]
