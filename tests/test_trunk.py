"""Several sources in one run (heatmapnet.multisource, configs/trunk.yaml): the union scheme, the
loss of unlabelled channels, the mixing of sources, a trunk run and model.init_from of it."""
import json
import re

import cv2
import numpy as np
import pytest
import torch
import yaml

from heatmapnet.build import build_codec, build_criterion, build_dataset, build_mode, build_model, build_scheme
from heatmapnet.build import read_records
from heatmapnet.checkpoint import load_checkpoint
from heatmapnet.cli import main
from heatmapnet.config import config_from_dict, load_config
from heatmapnet.data.pipelines import collate_samples
from heatmapnet.errors import ConfigError
from heatmapnet.metadata import KeypointScheme, load_scheme
from heatmapnet.multisource import MixedSources, union_scheme
from heatmapnet.testing.reference import centernet_focal_loss
from heatmapnet.transfer import init_from_checkpoint

BACKBONE = "mobilenetv3_small_050"
SMALL = {"model": {"backbone": BACKBONE, "head_channels": 16},
         "train": {"steps": 2, "batch_size": 4, "warmup_steps": 1, "eval_every": 1000, "checkpoint_every": 1000,
                   "threads": 1},
         "eval": {"batch_size": 8}}


def scheme(name, names, pairs=(), sides="person"):
    return KeypointScheme(name=name, keypoint_names=tuple(names), flip_pairs=tuple(pairs),
                          oks_sigmas=[0.05] * len(names), sides=sides)


# ---------------------------------------------------------------------------------------------
# the union scheme
# ---------------------------------------------------------------------------------------------
def test_the_union_keeps_names_and_renames_the_other_sides_through_flip_pairs():
    body = scheme("body", ["head", "left_hand", "right_hand"], [(1, 2)], "person")
    face = scheme("face", ["left_eye", "right_eye", "nose"], [(0, 1)], "image")
    layout = union_scheme([body, face], ["b", "f"])
    union = layout.scheme
    # the first source's sides; the image-left eye is the person's right eye
    assert union.sides == "person"
    assert union.keypoint_names == ("head", "left_hand", "right_hand", "right_eye", "left_eye", "nose")
    assert union.flip_pairs == ((1, 2), (3, 4))
    assert union.flip_permutation.tolist() == [0, 2, 1, 4, 3, 5]
    assert layout.offsets == (0, 3) and layout.channels(1) == slice(3, 6)
    assert layout.flip_permutation(1).tolist() == [0, 1, 2, 4, 3, 5]  # a face crop swaps only the eyes
    assert layout.schemes[1].keypoint_names == ("left_eye", "right_eye", "nose")  # the source keeps its own
    # with the image's sides first, the body's hands are renamed instead
    assert union_scheme([face, body], ["f", "b"]).scheme.keypoint_names == (
        "left_eye", "right_eye", "nose", "head", "right_hand", "left_hand")


def test_a_name_two_sources_give_is_prefixed_in_both_and_a_scheme_without_pairs_is_not_mirrored():
    first = scheme("one", ["head", "left_hand", "right_hand"], [(1, 2)])
    second = scheme("two", ["head", "tail"])
    layout = union_scheme([first, second], ["one", "two"])
    assert layout.scheme.keypoint_names == ("one/head", "left_hand", "right_hand", "two/head", "tail")
    assert layout.flip_permutation(1) is None and layout.flip_permutation(0).tolist() == [0, 2, 1, 3, 4]


def test_the_trunk_union_maps_the_face_rows_into_ibug68_by_name():
    union = build_scheme(load_config("trunk"))
    ibug, mtfl, lsp = load_scheme("ibug68"), load_scheme("mtfl5"), load_scheme("lsp14")
    assert union.num_keypoints == 87 and union.sides == "person"
    assert union.keypoint_names[:68] == ibug.keypoint_names and union.keypoint_names[73:] == lsp.keypoint_names
    assert union.keypoint_names[68:73] == ("right_eye", "left_eye", "nose", "right_mouth_corner", "left_mouth_corner")
    assert mtfl.sides == "image"


# ---------------------------------------------------------------------------------------------
# hand-made sources: two folders of .pts files, 3 points each
# ---------------------------------------------------------------------------------------------
def write_source(folder, points_list, size=48):
    folder.mkdir(parents=True)
    for index, points in enumerate(points_list):
        cv2.imwrite(str(folder / f"im{index}.png"), np.full((size, size, 3), 40 * index % 255, np.uint8))
        rows = "\n".join(f"{x + 1} {y + 1}" for x, y in points)  # .pts is 1-based
        (folder / f"im{index}.pts").write_text(f"version: 1\nn_points: {len(points)}\n{{\n{rows}\n}}\n")


@pytest.fixture
def hand_made(tmp_path):
    """Two sources (3 + 3 points: a person-sided body, an image-sided face) and the config of a run of both."""
    for name, names, pairs, sides in (("body3", ["head", "left_hand", "right_hand"], [["left_hand", "right_hand"]],
                                       "person"),
                                      ("face3", ["left_eye", "right_eye", "nose"], [["left_eye", "right_eye"]],
                                       "image")):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(
            {"name": name, "sides": sides, "keypoints": names, "flip_pairs": pairs, "skeleton": [],
             "oks_sigmas": [0.05] * 3}))
    write_source(tmp_path / "a", [[(14, 12), (30, 20), (18, 34)], [(16, 14), (32, 22), (20, 32)],
                                  [(15, 13), (31, 21), (19, 33)]])
    write_source(tmp_path / "b", [[(12, 16), (34, 16), (23, 30)], [(13, 17), (33, 15), (24, 31)]])
    values = {"data": {"scheme": "union", "input_size": [32, 32], "num_workers": 0,
                       "train": {"sources": [
                           {"name": "a", "scheme": str(tmp_path / "body3.yaml"), "format": "pts",
                            "ann_file": str(tmp_path / "a")},
                           {"name": "b", "scheme": str(tmp_path / "face3.yaml"), "format": "pts",
                            "ann_file": str(tmp_path / "b")}]},
                       "val": {"sources": [{"name": "a", "format": "pts", "ann_file": str(tmp_path / "a")},
                                           {"name": "b", "format": "pts", "ann_file": str(tmp_path / "b")}]}},
              **SMALL}
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(values))
    return path, values


def test_a_sample_trains_only_its_own_sources_channels(hand_made):
    config = config_from_dict(hand_made[1], "hand-made")
    scheme = build_scheme(config)
    codec = build_codec(config, scheme)
    records = read_records(config, "train")
    assert [record.source for record in records] == [0, 0, 0, 1, 1]
    dataset = build_dataset(config, records, codec, scheme, train=False)
    a_samples = [dataset[i] for i in range(3)]
    b_samples = [dataset[i] for i in range(3, 5)]
    for sample in a_samples:
        assert sample["heatmap_weights"].tolist() == [1, 1, 1, 0, 0, 0]  # b's channels: unlabelled
        assert sample["source"] == 0 and not sample["heatmaps"][3:].any() and not sample["visible"][3:].any()
    for sample in b_samples:
        assert sample["heatmap_weights"].tolist() == [0, 0, 0, 1, 1, 1]
    criterion = build_criterion(config, scheme)  # focal: a sum over weighted maps / their positives
    torch.manual_seed(0)
    logits = (torch.randn(5, 6, 8, 8) * 3).clamp(-8, 8)  # within CenterNet's clamp (+-9.2), where the two agree
    a, b = collate_samples(a_samples), collate_samples(b_samples)
    # a batch of a's samples: the loss of a's channels alone (CenterNet's own loss, independently)
    assert float(criterion(logits[:3], a)) == pytest.approx(float(centernet_focal_loss(logits[:3, :3],
                                                                                       a["heatmaps"][:, :3])), rel=1e-5)
    # b's blank channels trained as background would add their negatives
    assert float(centernet_focal_loss(logits[:3], a["heatmaps"])) > float(criterion(logits[:3], a)) * 1.5
    # a mixed batch: both sources' own losses, each weighted by its positives (one per labelled point)
    both = collate_samples(a_samples + b_samples)
    loss_a = float(centernet_focal_loss(logits[:3, :3], a["heatmaps"][:, :3]))
    loss_b = float(centernet_focal_loss(logits[3:, 3:], b["heatmaps"][:, 3:]))
    assert float(criterion(logits, both)) == pytest.approx((loss_a * 9 + loss_b * 6) / 15, rel=1e-5)
    assert int((both["heatmaps"] == 1).sum()) == 15


def test_equal_mixing_gives_each_source_the_same_share_and_a_fixed_sequence():
    class Part:
        def __init__(self, size):
            self.size = size

        def __len__(self):
            return self.size

        def _make_sample(self, index, rng):
            return {"record_index": torch.tensor(index), "draw": float(rng.random())}

    mixed = MixedSources([Part(5), Part(2)], [[0, 1, 2, 3, 4], [5, 6]], [0, 1], "equal", seed=3)
    assert len(mixed) == 10
    assert [mixed.locate(i) for i in range(10)] == [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4),
                                                    (1, 0), (1, 1), (1, 0), (1, 1), (1, 0)]
    assert int(mixed[7]["record_index"]) == 5 and int(mixed[7]["source"]) == 1
    assert mixed[(7, 2)]["draw"] == mixed[(7, 2)]["draw"]  # a pure function of (index, epoch)
    assert mixed[(5, 0)]["draw"] != mixed[(7, 0)]["draw"]  # a repeat is another crop
    proportional = MixedSources([Part(5), Part(2)], [[0, 1, 2, 3, 4], [5, 6]], [0, 1], "proportional")
    assert len(proportional) == 7 and proportional.locate(6) == (1, 1)


# ---------------------------------------------------------------------------------------------
# bad sources: one line naming the source's index and key, before training
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("override, expected", [
    ("data.train.sources.1.scheme=nope", r"data\.train\.sources\[1\]\.scheme='nope': unknown keypoint scheme"),
    ("data.val.sources.0.ann_file=/no/such/folder", r"data\.val\.sources\[0\]\.ann_file: no such file or folder"),
    ("data.val.sources.1.name=c", r"data\.val\.sources\[1\]\.name='c': not one of the training sources"),
    ("data.train.sources.0.augmentation.rotatoin=5", r"data\.train\.sources\[0\]\.augmentation\.rotatoin: not a "),
])
def test_a_bad_source_is_one_line_naming_it(hand_made, tmp_path, capsys, override, expected):
    code = main(["check", str(hand_made[0]), "--out", str(tmp_path / "run"), "--set", override])
    error = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in error
    assert re.match(r"heatmapnet check: (.*: )?" + expected, error), error


def test_a_point_count_that_is_not_the_sources_scheme_names_the_source(hand_made, tmp_path, capsys):
    values = hand_made[1]
    values["data"]["train"]["sources"][1]["scheme"] = "mtfl5"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(values))
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and error.startswith("heatmapnet train: data.train.sources[1]: ")
    assert "has 3 points per instance, its scheme mtfl5 has 5" in error
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_sources_need_the_union_scheme():
    with pytest.raises(ConfigError, match=r"data\.train\.sources: lists 1 source\(s\), which needs data\.scheme=union"):
        config_from_dict({"data": {"train": {"sources": [{"scheme": "ibug68", "ann_file": "x"}]}}}, "test")


# ---------------------------------------------------------------------------------------------
# a trunk run on real data, and model.init_from of it
# ---------------------------------------------------------------------------------------------
def test_the_mtfl_validation_slice_shares_no_source_image_with_training(shared_data):
    lines = [line.split()[0] for line in (shared_data / "mtfl5" / "train.txt").read_text().splitlines()[1:]
             if line.strip()]
    config = load_config("trunk")
    train, val = config.data.train.sources[1].subset, config.data.val.sources[1].subset
    assert (train, val) == ("0:6900", "6900:")
    image = [re.sub(r"_\d+_\d+\.jpg$", "", name) if name.startswith("net_7876/") else name for name in lines]
    assert not set(image[:6900]) & set(image[6900:])
    assert all(name.startswith("net_7876/") for name in lines[6900:])


def tiny_trunk(shared_data, tmp_path):
    """mtfl5 first (so the union has the image's sides) and LSPET: 6 training and 4 validation records each."""
    data = str(shared_data)
    values = {"data": {"scheme": "union", "input_size": [64, 64], "num_workers": 0,
                       "train": {"sources": [
                           {"name": "mtfl5", "scheme": "mtfl5", "format": "mtfl", "ann_file": f"{data}/mtfl5/train.txt",
                            "subset": "0:6", "augmentation": {"flip_probability": 0.0}},
                           {"name": "lsp", "scheme": "lsp14", "format": "lsp",
                            "ann_file": f"{data}/lsp_extended/joints.mat", "subset": "0:6"}]},
                       "val": {"sources": [
                           {"name": "mtfl5", "format": "mtfl", "ann_file": f"{data}/mtfl5/train.txt",
                            "subset": "6900:6904"},
                           {"name": "lsp", "format": "lsp", "ann_file": f"{data}/lsp_extended/joints.mat",
                            "subset": "2500:2504", "flip_test": True}]}},
              **SMALL}
    path = tmp_path / "tiny_trunk.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_a_trunk_run_starts_runs_of_each_scheme_by_name(shared_data, tmp_path, capsys):
    out = tmp_path / "trunk"
    assert main(["train", str(tiny_trunk(shared_data, tmp_path)), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "(mtfl5 6, lsp 6)" in printed
    checkpoint = load_checkpoint(out / "last.pt")
    union = checkpoint.scheme
    assert union.sides == "image" and union.num_keypoints == 19
    metrics = json.loads((out / "metrics.json").read_text())["final"]
    assert metrics["nme"] == pytest.approx((metrics["mtfl5/nme"] + metrics["lsp/nme_torso"]) / 2)
    assert "lsp/pck@0.2" in metrics and "mtfl5/failure_rate@0.1" in metrics
    rows = checkpoint.model["head.classifier.weight"]
    config = load_config("ytf68", [f"model.backbone={BACKBONE}", "model.head_channels=16"])
    # (scheme, its rows taken from the union's rows): mtfl5 as it was; LSP's joints renamed to the
    # image's sides and back; COCO's eyes and nose are MTFL's, its limbs LSP's, its ears new
    lsp = list(range(5, 19))
    coco = load_scheme("coco17")
    lsp_names = load_scheme("lsp14").keypoint_names
    coco_rows = {0: 2, 1: 1, 2: 0}  # nose; the person's left eye is the image-right eye (mtfl5 row 1)
    coco_rows.update({k: 5 + lsp_names.index(name) for k, name in enumerate(coco.keypoint_names)
                      if name in lsp_names})
    for target, expected in ((load_scheme("mtfl5"), dict(enumerate(range(5)))),
                             (load_scheme("lsp14"), dict(enumerate(lsp))), (coco, coco_rows)):
        model = build_model(config, target)
        fresh = model.head.classifier.weight.detach().clone()
        report = init_from_checkpoint(model, build_mode(config, target), target, out / "last.pt")
        assert report.loaded_tensors == report.total_tensors and not report.skipped  # every backbone/neck tensor
        assert report.rows_mapped == len(expected)
        weight = model.head.classifier.weight.detach()
        for row in range(target.num_keypoints):
            if row in expected:
                assert torch.equal(weight[row], rows[expected[row]]), (target.name, row)
            else:
                assert torch.equal(weight[row], fresh[row]), (target.name, row)
        state = model.state_dict()
        assert all(torch.equal(state[k], v) for k, v in checkpoint.model.items() if not k.startswith("head.classifier"))
    assert coco_rows.keys() == set(range(17)) - {3, 4}  # all but the ears
