"""``heatmapnet diagnose``: the oracle rows on hand-built crowds whose values are known without the
code under test: the truth scores 1 against itself, maps built from the truth score 1 in every row,
and a person whose centre peak is taken out costs what the AP definitions give by hand."""
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from heatmapnet.bottomup import BottomUpCodec
from heatmapnet.build import build_codec, build_dataset, build_mode, build_scheme, read_records
from heatmapnet.cli import main
from heatmapnet.config import EvalSection, load_config
from heatmapnet.data.pipelines import BottomUpDataset, collate_samples
from heatmapnet.data.records import Instance, Record
from heatmapnet.data.transforms import NO_AUGMENTATION
from heatmapnet.diagnose import Truth, diagnose, model_maps, nearest_truth, target_maps, target_pictures
from heatmapnet.evaluation import Evaluator
from heatmapnet.metadata import load_scheme
from heatmapnet.modes import BottomUpMode

LSP = load_scheme("lsp14")
SIZE = 128  # records are 128 x 128 and so is the input: the letterbox is the identity

# a standing person in unit box coordinates, LSP order: ankles, knees, hips, wrists, elbows,
# shoulders (right, left), neck, head top
SHAPE = np.array([[0.3, 1.0], [0.3, 0.75], [0.35, 0.5], [0.65, 0.5], [0.7, 0.75], [0.7, 1.0],
                  [0.0, 0.5], [0.1, 0.35], [0.25, 0.2], [0.75, 0.2], [0.9, 0.35], [1.0, 0.5],
                  [0.5, 0.15], [0.5, 0.0]])

# image 0: two people; image 1: three; boxes apart (no two Gaussians touch)
BOXES = [[[8.3, 10.6, 30.0, 52.0], [70.2, 40.4, 36.0, 64.0]],
         [[6.6, 8.2, 24.0, 40.0], [60.4, 6.3, 28.0, 48.0], [30.1, 70.7, 32.0, 50.0]]]
REMOVED = (1, 2)  # (image, person) whose centre peak the "missing centre" maps leave out


def _person(box) -> Instance:
    x, y, w, h = box
    return Instance(np.array([x, y]) + SHAPE * np.array([w, h]) * 0.999, np.ones(14, bool), np.array(box))


@pytest.fixture(scope="module")
def crowd():
    records = [Record(f"in-memory-{i}.png", SIZE, SIZE, [_person(b) for b in boxes], image_id=i,
                      image=np.full((SIZE, SIZE, 3), 40 * (i + 1), np.uint8)) for i, boxes in enumerate(BOXES)]
    codec = BottomUpCodec((SIZE, SIZE), 14, stride=4, person_score="centre_x_joints")
    dataset = BottomUpDataset(records, codec, 14, LSP.flip_permutation, NO_AUGMENTATION)
    return SimpleNamespace(records=records, codec=codec, dataset=dataset, mode=BottomUpMode(),
                           eval=EvalSection(batch_size=2))


def _maps_without_centre(crowd, batch):
    """The truth's maps with the centre heatmap of person REMOVED zeroed over its box."""
    maps = target_maps(batch, crowd.codec.layout)
    rows = (batch["record_index"] == REMOVED[0]).nonzero().flatten()
    x, y, w, h = (np.array(BOXES[REMOVED[0]][REMOVED[1]]) - 1.5) / 4  # input -> heatmap pixels
    maps[rows, 0, math.floor(y):math.ceil(y + h) + 1, math.floor(x):math.ceil(x + w) + 1] = 0.0
    return maps


def _run(crowd, maps_of=None):
    return diagnose(crowd.records, crowd.dataset, crowd.codec, crowd.mode, LSP, crowd.eval, maps_of, batch_size=2)


def test_the_truth_scores_one_against_itself_and_through_its_own_maps(crowd):
    result = _run(crowd)
    assert [r.name for r in result.rows] == ["gt_boxes+mean_pose", "gt_maps", "gt_self"]
    assert result.row("gt_self").oks_ap == 1.0 and result.row("gt_self").oks_ar == 1.0
    assert result.row("gt_maps").oks_ap == pytest.approx(1.0, abs=1e-9)
    assert (result.num_images, result.num_people, result.centres_off_map) == (2, 5, 0)
    assert result.centre_ap is None and "gt_self" in result.table()


def test_maps_built_from_the_truth_score_one_in_every_row(crowd):
    result = _run(crowd, lambda batch: target_maps(batch, crowd.codec.layout))
    for row in result.rows:
        assert row.oks_ap == pytest.approx(1.0, abs=1e-9), row.name
    assert result.row("gt_centres+pred_joints").people_submitted == 5
    assert result.row("pred_centres+gt_joints").people_submitted == 5  # only the 5 positive centre peaks
    assert result.centre_ap == 1.0 and result.keypoint_ap == 1.0
    assert list(result.keypoint_ap_per_type) == list(LSP.keypoint_names)


def test_a_missing_centre_peak_costs_what_the_ap_definitions_give_by_hand(crowd):
    """4 of 5 people found, each exactly, none of the other candidates near anyone: COCO's AP is
    precision 1 at the 81 recall thresholds 0, 0.01, ..., 0.80 of its 101 and 0 above, so 81/101,
    its AR 0.8; the centre AP (area under the precision-recall curve) 1 x 0.8. With the ground
    truth's centres the joints are all there: 1. The model row is the trainer's evaluator's value."""
    grey = torch.stack([crowd.dataset[i]["image"][0, 0, 0] for i in range(2)])

    class Model(torch.nn.Module):  # each image's maps, found by its grey level (image i is 40 (i + 1))
        def heatmaps(self, images):
            found = [int(torch.argmin((grey - v).abs())) for v in images[:, 0, 0, 0]]
            return _maps_without_centre(crowd, collate_samples([crowd.dataset[i] for i in found]))

    model = Model()
    result = _run(crowd, model_maps(model, None, crowd.codec))
    assert result.row("model").oks_ap == pytest.approx(81 / 101, abs=1e-9)
    assert result.row("model").oks_ar == pytest.approx(0.8, abs=1e-9)
    assert result.row("pred_centres+gt_joints").oks_ap == pytest.approx(81 / 101, abs=1e-9)
    assert result.row("pred_centres+gt_joints").people_submitted == 4
    assert result.centre_ap == pytest.approx(0.8, abs=1e-12)
    assert result.row("gt_centres+pred_joints").oks_ap == pytest.approx(1.0, abs=1e-9)
    assert result.keypoint_ap == 1.0
    # the same model through the trainer's Evaluator (its own loader and batches)
    evaluator = Evaluator(crowd.mode, crowd.dataset, crowd.records, crowd.codec, LSP, crowd.eval)
    assert evaluator(model)["oks_ap"] == result.row("model").oks_ap


def test_people_of_one_shape_get_the_mean_pose_exactly(crowd):
    """Every person is SHAPE scaled into its box, so the mean pose is SHAPE and scores 1."""
    assert _run(crowd).row("gt_boxes+mean_pose").oks_ap == pytest.approx(1.0, abs=1e-9)


def test_each_centre_takes_the_nearest_present_person():
    truth = Truth(np.zeros((1, 3, 14, 2)), np.ones((1, 3, 14), bool),
                  np.array([[[0, 0, 10, 10], [100, 0, 10, 10], [50, 0, 10, 10]]], float),
                  np.array([[True, True, False]]))
    # centres (5, 5) and (105, 5); (54, 5) is nearest the absent third person, so takes the first
    assert nearest_truth(np.array([[[5.0, 5.0], [104.0, 5.0], [54.0, 5.0]]]), truth).tolist() == [[0, 1, 0]]


def test_target_pictures_are_written(crowd, tmp_path):
    written = target_pictures(crowd.dataset, crowd.codec, LSP, [1], tmp_path)
    assert [p.split("/")[-1] for p in written] == ["targets_0001.png"]


def test_the_command_writes_the_table_json_and_pictures_without_a_checkpoint(tmp_path, capsys):
    assert main(["diagnose", "people_bottomup", "--limit", "3", "--pictures", "2", "--out", str(tmp_path)]) == 0
    written = json.loads((tmp_path / "diagnose.json").read_text())
    assert [r["name"] for r in written["rows"]] == ["gt_boxes+mean_pose", "gt_maps", "gt_self"]
    assert written["rows"][-1]["oks_ap"] == 1.0 and written["num_images"] == 3
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["targets_0000.png", "targets_0002.png"]
    assert "gt_self" in capsys.readouterr().out
    assert main(["diagnose", "synthetic_faces", "--out", str(tmp_path)]) == 2  # not bottom-up: one line
    assert "data.mode is 'topdown'" in capsys.readouterr().err


def test_real_lsp_mosaics_score_one_against_themselves_and_through_their_targets(shared_data):
    config = load_config("lsp_mosaic", [f"data.val.ann_file={shared_data}/lsp_extended/joints.mat"])
    scheme = build_scheme(config)
    codec, mode = build_codec(config, scheme), build_mode(config, scheme)
    records = read_records(config, "val")
    dataset = build_dataset(config, records, codec, scheme, train=False)
    result = diagnose(records, dataset, codec, mode, scheme, config.eval, None, batch_size=4, limit=8)
    assert result.row("gt_self").oks_ap == 1.0 and result.num_people >= 16
    assert result.row("gt_maps").oks_ap >= 0.95  # the targets decode back to the people they encode
