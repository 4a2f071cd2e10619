"""Bottom-up multi-person pose (CenterNet multi-pose): people encoded into centre/joint heatmaps
and regression rows are recovered exactly from the output a perfect network would give; joints
snap to the right person's peaks; the loss, flip test, dataset boxes, OKS AP and the command line.

A "perfect output" is built here from the targets by the channel table of the issue (centre
heatmap in channel 0, joint heatmaps after the joint offsets, each regression row written at the
pixel it is read at) and every decoded result is compared with the ORIGINAL keypoints and boxes.
"""
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from heatmapnet import bottomup
from heatmapnet.bottomup import BottomUpCodec, BottomUpCriterion, BottomUpLayout
from heatmapnet.cli import main
from heatmapnet.data.pipelines import BottomUpDataset, collate_samples
from heatmapnet.data.records import Instance, Record
from heatmapnet.data.transforms import NO_AUGMENTATION, AffineParams
from heatmapnet.cocoeval import people_results
from heatmapnet.evaluation import PeoplePredictions, heatmap_probabilities, invert_affine_batch
from heatmapnet.kernels import use_kernels
from heatmapnet.metadata import load_scheme
from heatmapnet.modes import BottomUpMode
from heatmapnet.scoring import people_metrics
from heatmapnet.targets import FixedSigma, RadiusSigma
from heatmapnet.testing import people_maps

REPO = Path(__file__).resolve().parent.parent

# A five-joint body for the codec tests: head, left hand, right hand, left foot, right foot.
FIVE_FLIP = [0, 2, 1, 4, 3]


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def perfect_output(codec: BottomUpCodec, targets: dict) -> torch.Tensor:
    """(7 + 3K, H, W): what a perfect network gives after its activation, written channel by
    channel from the issue's table (not from the codec): heatmaps in channel 0 and in the K joint
    channels, each person's centre offset / size / joint offsets at its centre pixel, each
    labelled on-map joint's sub-pixel offset at its own pixel, 0 everywhere else."""
    num_keypoints = codec.layout.num_keypoints
    height, width = codec.heatmap_size
    maps = torch.zeros(7 + 3 * num_keypoints, height, width)
    maps[0] = targets["heatmaps"][0]
    maps[5 + 2 * num_keypoints:5 + 3 * num_keypoints] = targets["heatmaps"][1:]
    for person in range(targets["centre_index"].shape[0]):
        if targets["centre_mask"][person] > 0:
            y, x = divmod(int(targets["centre_index"][person]), width)
            maps[1:3, y, x] = targets["centre_offset"][person]
            maps[3:5, y, x] = targets["size"][person]
            maps[5:5 + 2 * num_keypoints, y, x] = targets["joint_offsets"][person].reshape(-1)
        for k in range(num_keypoints):
            if targets["joint_mask"][person, k] > 0:
                y, x = divmod(int(targets["joint_index"][person, k]), width)
                maps[5 + 3 * num_keypoints:7 + 3 * num_keypoints, y, x] = targets["joint_offset"][person, k]
    return maps


def to_heatmap(points, stride=4):
    """Input pixels -> heatmap pixels (pixel j covers input [j s, (j + 1) s))."""
    return (np.asarray(points, dtype=np.float64) - (stride - 1) / 2.0) / stride


def nearest_pixel(points):
    return np.floor(np.asarray(points) + 0.5).astype(int)


# People on a 128 x 128 input (32 x 32 maps at stride 4), input pixels.
#   A: a tall person (height 97).
#   B: a person 4x shorter (height 24.25) standing inside A's box; its left foot is unlabelled
#      (the coordinates are garbage, placed inside A's box where A's own left foot is not).
#   C: a person entering from the left edge, overlapping A; its right hand (x = -9.7) and right
#      foot (x = -3.2) are outside the image (nearest heatmap pixel -2 and -1), still labelled.
#      A's right hand lies inside C's box, 33.6 px from C's right hand.
#   D: a person whose box centre lies above the image: not a detectable person; its right foot is
#      on the image and draws a right-foot peak that lies in nobody's box.
PEOPLE_BOXES = np.array([
    [20.3, 18.6, 44.2, 97.0],
    [30.2, 40.9, 11.1, 24.25],
    [-14.6, 30.4, 40.3, 60.2],
    [100.0, -60.0, 30.0, 50.0],
])
PEOPLE_KEYPOINTS = np.array([
    [[42.1, 27.3], [60.9, 66.7], [23.9, 70.2], [51.3, 110.8], [31.6, 112.4]],
    [[35.7, 43.3], [40.4, 52.2], [31.3, 53.9], [45.0, 100.0], [33.2, 63.8]],
    [[6.2, 34.1], [22.8, 58.3], [-9.7, 57.8], [10.4, 88.1], [-3.2, 89.5]],
    [[112.3, -50.2], [125.1, -20.3], [104.2, -18.7], [118.6, -12.0], [108.9, 2.7]],
])
PEOPLE_VISIBLE = np.array([
    [True, True, True, True, True],
    [True, True, True, False, True],
    [True, True, True, True, True],
    [True, True, True, True, True],
])
DETECTABLE = [0, 1, 2]
OFF_IMAGE = {(2, 2), (2, 4)}  # (person, joint) labelled but outside the image


def test_the_test_people_are_laid_out_as_their_comments_say():
    """Preconditions of the recovery test (exact recovery needs distinct pixels: the K joint types
    share one sub-pixel offset map, and people one set of regression maps at their centres)."""
    heights = PEOPLE_BOXES[:2, 3]
    assert heights[0] == pytest.approx(4 * heights[1])
    centres = nearest_pixel(to_heatmap(PEOPLE_BOXES[:, :2] + PEOPLE_BOXES[:, 2:] / 2))
    on_map = ((centres >= 0) & (centres <= 31)).all(axis=1)
    assert on_map.tolist() == [True, True, True, False]
    # detectable centres are more than one pixel apart (3 x 3 suppression keeps each)
    for i in DETECTABLE:
        for j in DETECTABLE:
            if i < j:
                assert np.abs(centres[i] - centres[j]).max() >= 2
    # every labelled on-map joint has a pixel of its own
    pixels = nearest_pixel(to_heatmap(PEOPLE_KEYPOINTS))
    joint_on_map = PEOPLE_VISIBLE & ((pixels >= 0) & (pixels <= 31)).all(axis=2)
    assert {(n, k) for n, k in zip(*np.nonzero(PEOPLE_VISIBLE & ~joint_on_map)) if n != 3} == OFF_IMAGE
    used = [tuple(p) for p in pixels[joint_on_map]]
    assert len(used) == len(set(used))
    # B lies inside A's box; A's right hand inside C's box
    a, b, c = PEOPLE_BOXES[:3]
    assert a[0] < b[0] and b[0] + b[2] < a[0] + a[2] and a[1] < b[1] and b[1] + b[3] < a[1] + a[3]
    hand = PEOPLE_KEYPOINTS[0, 2]
    assert c[0] <= hand[0] <= c[0] + c[2] and c[1] <= hand[1] <= c[1] + c[3]


def _match_people(decoded_boxes, boxes):
    """Index of the decoded box nearest (by centre) each original box."""
    decoded_centres = decoded_boxes[:, :2] + decoded_boxes[:, 2:] / 2
    centres = boxes[:, :2] + boxes[:, 2:] / 2
    return [int(np.argmin(np.linalg.norm(decoded_centres - c, axis=1))) for c in centres]


# ----------------------------------------------------------------------------------------------
# decoding recovers people from their own targets
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", [RadiusSigma(), FixedSigma(2.0)], ids=["radius", "fixed"])
def test_decoding_the_perfect_output_recovers_every_person_exactly(policy, cpu_path):
    codec = BottomUpCodec((128, 128), 5, stride=4, sigma_policy=policy, exact_peak=True, max_people=6)
    targets = codec.encode(PEOPLE_KEYPOINTS, PEOPLE_VISIBLE, PEOPLE_BOXES)
    maps = perfect_output(codec, targets)
    people = codec.decode(maps[None])

    scores = people.scores[0].numpy()
    assert scores.shape == (6,)
    # three people found at full score (exact peaks), the rest of the candidates are background
    assert scores[:3].tolist() == [1.0, 1.0, 1.0]
    assert np.all(scores[3:] < 0.1)

    boxes = people.boxes[0, :3].double().numpy()
    match = _match_people(boxes, PEOPLE_BOXES[DETECTABLE])
    assert sorted(match) == [0, 1, 2]
    np.testing.assert_allclose(boxes[match], PEOPLE_BOXES[DETECTABLE], rtol=0, atol=1e-4)

    keypoints = people.keypoints[0].double().numpy()
    snapped = people.snapped[0].numpy()
    keypoint_scores = people.keypoint_scores[0].numpy()
    for person, row in zip(DETECTABLE, match):
        for k in range(5):
            if not PEOPLE_VISIBLE[person, k]:
                assert np.all(np.isfinite(keypoints[row, k]))  # unlabelled: any point, but a number
                continue
            np.testing.assert_allclose(keypoints[row, k], PEOPLE_KEYPOINTS[person, k], rtol=0, atol=1e-4,
                                       err_msg=f"person {person} joint {k}")
            if (person, k) in OFF_IMAGE:
                # no peak to snap to: kept where it was regressed, with no heatmap support
                assert not snapped[row, k] and keypoint_scores[row, k] == 0.0, (person, k)
            else:
                assert snapped[row, k] and keypoint_scores[row, k] == 1.0, (person, k)


def test_unlabelled_and_off_image_joints_draw_no_peak():
    codec = BottomUpCodec((128, 128), 5, stride=4, exact_peak=True)
    targets = codec.encode(PEOPLE_KEYPOINTS, PEOPLE_VISIBLE, PEOPLE_BOXES)
    heatmaps = targets["heatmaps"]
    # peaks of value 1 per channel: centres of A, B, C; per joint type its labelled on-map joints
    # head: A B C; left hand: A B C; right hand: A B (C's is off the image); left foot: A C (B's is
    # unlabelled); right foot: A B D (C's is off the image; D's is on it, although D's centre is not)
    peaks = (heatmaps == 1.0).flatten(1).sum(dim=1).tolist()
    assert peaks == [3, 3, 3, 2, 2, 3]
    garbage = nearest_pixel(to_heatmap(PEOPLE_KEYPOINTS[1, 3]))
    assert heatmaps[4, garbage[1], garbage[0]] < 1.0
    assert targets["centre_mask"].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert targets["joint_offsets_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 1], [1, 1, 1, 1, 1],
                                                      [0, 0, 0, 0, 0]]
    assert targets["joint_mask"][2].tolist() == [1, 1, 0, 1, 0]


def test_an_image_without_people_decodes_to_no_one_above_the_minimum_score(cpu_path):
    codec = BottomUpCodec((64, 64), 5, stride=4, max_people=4)
    targets = codec.encode(np.zeros((0, 5, 2)), np.zeros((0, 5), bool), np.zeros((0, 4)))
    assert targets["heatmaps"].shape == (6, 16, 16) and float(targets["heatmaps"].abs().sum()) == 0.0
    assert targets["centre_index"].shape == (0,) and targets["joint_offsets"].shape == (0, 5, 2)
    maps = perfect_output(codec, targets)[None]
    mode = BottomUpMode()
    back = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], dtype=torch.float64)
    predictions = mode.decode_batch(codec, maps, back, np.array([0]))
    assert predictions.person_scores.tolist() == [0.0] * 4
    scheme = load_scheme("coco17")
    assert mode.image_results(predictions, scheme) == []
    # a weak centre response everywhere (below the minimum score) gives no one either
    maps[:, 0] = 0.05
    assert mode.image_results(mode.decode_batch(codec, maps, back, np.array([0])), scheme) == []


# ----------------------------------------------------------------------------------------------
# snapping takes the right person's joint
# ----------------------------------------------------------------------------------------------
def _hand_maps(peaks, centres, joint_offset=(0.25, -0.25)):
    """K = 1 (a wrist), 16 x 16 maps. ``centres``: (x, y, score, (w, h), (dx, dy) regressed wrist
    offset); ``peaks``: (x, y, value) wrist peaks, each with the same sub-pixel offset."""
    maps = torch.zeros(10, 16, 16)
    for x, y, score, size, offset in centres:
        maps[0, y, x] = score
        maps[3:5, y, x] = torch.tensor(size)
        maps[5:7, y, x] = torch.tensor(offset)
    for x, y, value in peaks:
        maps[7, y, x] = value
        maps[8:10, y, x] = torch.tensor(joint_offset)
    return maps[None]


def test_each_person_snaps_to_its_own_wrist_when_two_wrists_are_close(cpu_path):
    codec = BottomUpCodec((64, 64), 1, stride=4, max_people=2, joint_threshold=0.1)
    # person P centred at pixel (4, 8), Q at (11, 8); both boxes 12 x 12 pixels wide, so both hold
    # both wrist peaks, (7, 8) and (9, 8), two pixels apart. P regresses its wrist to (6.6, 8.0),
    # 0.4 from (7, 8) and 2.4 from (9, 8); Q to (8.7, 8.2), 0.36 from (9, 8) and 1.71 from (7, 8).
    maps = _hand_maps(peaks=[(7, 8, 0.9), (9, 8, 0.7)],
                      centres=[(4, 8, 0.8, (12.0, 12.0), (2.6, 0.0)), (11, 8, 0.6, (12.0, 12.0), (-2.3, 0.2))])
    people = codec.decode(maps)
    assert people.scores[0].tolist() == pytest.approx([0.8, 0.6])
    # heatmap points + the joint offset (0.25, -0.25), in input pixels x 4 + 1.5
    expected = np.array([[7.25 * 4 + 1.5, 7.75 * 4 + 1.5], [9.25 * 4 + 1.5, 7.75 * 4 + 1.5]])
    np.testing.assert_allclose(people.keypoints[0, :, 0].numpy(), expected, rtol=0, atol=1e-5)
    assert people.snapped[0, :, 0].tolist() == [True, True]
    assert people.keypoint_scores[0, :, 0].tolist() == pytest.approx([0.9, 0.7])
    # boxes: centre pixel +- size / 2 in heatmap pixels, to input pixels
    np.testing.assert_allclose(people.boxes[0].numpy(), [[-2 * 4 + 1.5, 2 * 4 + 1.5, 48, 48],
                                                         [5 * 4 + 1.5, 2 * 4 + 1.5, 48, 48]], atol=1e-5)


def test_people_scored_by_centre_times_joints_are_ranked_by_that_product():
    # P: centre 0.8 at (4, 8), its wrist regressed onto the weak peak (6, 8) of 0.25; Q: centre 0.6
    # at (11, 8), its wrist onto the strong peak (13, 8) of 0.9. CenterNet ranks P first (0.8 > 0.6);
    # the product ranks Q first: 0.6 x 0.9 = 0.54 > 0.8 x 0.25 = 0.2.
    maps = _hand_maps(peaks=[(6, 8, 0.25), (13, 8, 0.9)],
                      centres=[(4, 8, 0.8, (8.0, 8.0), (2.0, 0.0)), (11, 8, 0.6, (8.0, 8.0), (2.0, 0.0))])
    centre = BottomUpCodec((64, 64), 1, stride=4, max_people=2, joint_threshold=0.1).decode(maps)
    assert centre.scores[0].tolist() == pytest.approx([0.8, 0.6])
    product = BottomUpCodec((64, 64), 1, stride=4, max_people=2, joint_threshold=0.1,
                            person_score="centre_x_joints").decode(maps)
    assert product.scores[0].tolist() == pytest.approx([0.54, 0.2])
    assert product.centre_scores[0].tolist() == pytest.approx([0.6, 0.8])
    # every field follows its person: Q's wrist is the peak (13, 8) + (0.25, -0.25), P's (6, 8) + same
    np.testing.assert_allclose(product.keypoints[0, :, 0].numpy(),
                               [[13.25 * 4 + 1.5, 7.75 * 4 + 1.5], [6.25 * 4 + 1.5, 7.75 * 4 + 1.5]], atol=1e-5)
    assert product.keypoint_scores[0, :, 0].tolist() == pytest.approx([0.9, 0.25])
    np.testing.assert_allclose(product.boxes[0, :, 0].numpy(), [(11 - 4) * 4 + 1.5, (4 - 4) * 4 + 1.5], atol=1e-5)
    with pytest.raises(ValueError, match=r"unknown eval.person_score 'joints'"):
        BottomUpCodec((64, 64), 1, person_score="joints")


def test_a_peak_outside_the_box_below_the_threshold_or_too_far_is_not_taken(cpu_path):
    codec = BottomUpCodec((64, 64), 1, stride=4, max_people=1, joint_threshold=0.1)
    # one person at pixel (6, 8), box 8 x 8 pixels: x and y in [2, 10]; regressed wrist (8.5, 8.0);
    # a peak counts within 0.3 x 8 = 2.4 pixels of it. Peaks sit at pixel + (0.25, -0.25).
    person = [(6, 8, 0.9, (8.0, 8.0), (2.5, 0.0))]
    regressed_input = np.array([8.5 * 4 + 1.5, 8.0 * 4 + 1.5])
    at_7_8 = [7.25 * 4 + 1.5, 7.75 * 4 + 1.5]  # 1.27 pixels from the regressed wrist

    def decoded(peaks):
        people = codec.decode(_hand_maps(peaks, person))
        return people.keypoints[0, 0, 0].numpy(), bool(people.snapped[0, 0, 0]), float(people.keypoint_scores[0, 0, 0])

    # the nearest peak (10, 8) lies outside the box (x 10.25 > 10): the farther one inside, (7, 8), is
    # taken, although (10, 8) is the stronger (only peak candidates of one person's type compete)
    point, snapped, score = decoded([(10, 8, 0.9), (7, 8, 0.5)])
    np.testing.assert_allclose(point, at_7_8, rtol=0, atol=1e-5)
    assert snapped and score == pytest.approx(0.5)

    # the nearest peak (9, 8) is inside but below the threshold (0.05 < 0.1): (7, 8) is taken
    point, snapped, score = decoded([(9, 8, 0.05), (7, 8, 0.5)])
    np.testing.assert_allclose(point, at_7_8, rtol=0, atol=1e-5)
    assert snapped and score == pytest.approx(0.5)

    # no usable peak: the regressed point, not snapped, scored by the wrist map at its nearest
    # pixel (9, 8), which holds the weak 0.05 peak
    point, snapped, score = decoded([(10, 8, 0.9), (9, 8, 0.05)])
    np.testing.assert_allclose(point, regressed_input, rtol=0, atol=1e-5)
    assert not snapped and score == pytest.approx(0.05)

    # a peak at the threshold is usable
    point, snapped, score = decoded([(9, 8, 0.1)])
    np.testing.assert_allclose(point, [9.25 * 4 + 1.5, 7.75 * 4 + 1.5], rtol=0, atol=1e-5)
    assert snapped

    # inside the box but 4.26 pixels away (> 2.4): someone else's, not taken; 2.26 away: taken
    point, snapped, score = decoded([(4, 8, 0.9)])
    np.testing.assert_allclose(point, regressed_input, rtol=0, atol=1e-5)
    assert not snapped and score == 0.0
    point, snapped, score = decoded([(6, 8, 0.9)])
    np.testing.assert_allclose(point, [6.25 * 4 + 1.5, 7.75 * 4 + 1.5], rtol=0, atol=1e-5)
    assert snapped


def test_the_best_persons_joints_do_not_depend_on_how_many_people_are_decoded(cpu_path):
    # P (score 0.8) and Q (0.6) as in the close-wrists test, but P's own wrist peak (7, 8) is the
    # weaker one (0.5 < 0.9): decoding only P must still find it
    maps = _hand_maps(peaks=[(7, 8, 0.5), (9, 8, 0.9)],
                      centres=[(4, 8, 0.8, (12.0, 12.0), (2.6, 0.0)), (11, 8, 0.6, (12.0, 12.0), (-2.3, 0.2))])
    for max_people in (1, 2, 5):
        people = BottomUpCodec((64, 64), 1, stride=4, max_people=max_people).decode(maps)
        np.testing.assert_allclose(people.keypoints[0, 0, 0].numpy(), [7.25 * 4 + 1.5, 7.75 * 4 + 1.5],
                                   rtol=0, atol=1e-5, err_msg=f"max_people={max_people}")
        assert float(people.keypoint_scores[0, 0, 0]) == pytest.approx(0.5)


# ----------------------------------------------------------------------------------------------
# the training criterion
# ----------------------------------------------------------------------------------------------
class RecordingLoss(torch.nn.Module):
    """A heatmap loss that remembers what it was given and returns a fixed value per call."""

    def __init__(self, values):
        super().__init__()
        self.values, self.calls = list(values), []

    def forward(self, prediction, target, keypoint_weights=None):
        self.calls.append((prediction.detach().clone(), target.clone()))
        return torch.tensor(self.values[(len(self.calls) - 1) % len(self.values)])


def _hand_sample(centre_index, centre_mask, centre_offset, size, joint_offsets, joint_offsets_mask,
                 joint_index, joint_offset, joint_mask, heatmap_value):
    """One sample's bottom-up targets for K = 1 on 2 x 3 maps, written out by hand."""
    return {
        "heatmaps": torch.full((2, 2, 3), heatmap_value),
        "centre_index": torch.tensor(centre_index), "centre_mask": torch.tensor(centre_mask),
        "centre_offset": torch.tensor(centre_offset), "size": torch.tensor(size),
        "joint_offsets": torch.tensor(joint_offsets), "joint_offsets_mask": torch.tensor(joint_offsets_mask),
        "joint_index": torch.tensor(joint_index), "joint_offset": torch.tensor(joint_offset),
        "joint_mask": torch.tensor(joint_mask),
    }


def test_the_criterion_gives_hand_computed_l1_terms_over_labelled_rows_only():
    # K = 1: channels centre 0, centre_offset 1-2, size 3-4, joint_offsets 5-6, joints 7, joint_offset 8-9
    first = _hand_sample(centre_index=[4, 0], centre_mask=[1.0, 1.0],
                         centre_offset=[[0.5, 0.1], [0.25, 0.25]], size=[[2.0, 6.0], [4.0, 4.0]],
                         joint_offsets=[[[1.5, -2.0]], [[9.0, 9.0]]], joint_offsets_mask=[[1.0], [0.0]],
                         joint_index=[[2], [5]], joint_offset=[[[0.1, 0.1]], [[7.0, 7.0]]],
                         joint_mask=[[1.0], [0.0]], heatmap_value=0.25)
    second = _hand_sample(centre_index=[5], centre_mask=[1.0], centre_offset=[[-0.5, 0.0]], size=[[1.0, 2.0]],
                          joint_offsets=[[[0.5, 1.0]]], joint_offsets_mask=[[1.0]], joint_index=[[3]],
                          joint_offset=[[[0.25, 0.5]]], joint_mask=[[1.0]], heatmap_value=0.75)
    batch = collate_samples([first, second])  # the second sample's row 1 is padding (mask 0, index 0)
    assert batch["centre_mask"].tolist() == [[1.0, 1.0], [1.0, 0.0]]
    assert batch["joint_mask"].tolist() == [[[1.0], [0.0]], [[1.0], [0.0]]]

    output = torch.zeros(2, 10, 2, 3)
    output[:, 0] = 3.0  # centre logits
    output[:, 7] = -2.0  # joint logits
    # sample 0, person 0 at flat 4 = (y 1, x 1); person 1 at flat 0 reads zeros
    output[0, 1:3, 1, 1] = torch.tensor([0.2, -0.1])  # |0.2-0.5| + |-0.1-0.1| = 0.5   (person 1: 0.25+0.25 = 0.5)
    output[0, 3:5, 1, 1] = torch.tensor([3.0, 5.0])  # |3-2| + |5-6| = 2                (person 1: 4+4 = 8)
    output[0, 5:7, 1, 1] = torch.tensor([1.0, -2.0])  # |1-1.5| + 0 = 0.5               (person 1: unlabelled)
    output[0, 8:10, 0, 2] = torch.tensor([0.3, 0.4])  # joint at flat 2: 0.2 + 0.3 = 0.5 (person 1: unlabelled)
    # sample 1, person 0 at flat 5 = (y 1, x 2), its joint at flat 3 = (y 1, x 0) reads zeros
    output[1, 1:3, 1, 2] = torch.tensor([-0.5, 0.5])  # 0 + 0.5 = 0.5
    output[1, 3:5, 1, 2] = torch.tensor([1.0, 1.0])  # 0 + 1 = 1
    output[1, 5:7, 1, 2] = torch.tensor([0.0, 1.0])  # 0.5 + 0 = 0.5
    # joint at flat 3: |0 - 0.25| + |0 - 0.5| = 0.75
    # the padding row reads pixel 0 of sample 1: large values there must not count
    output[1, 1:7, 0, 0] = 10.0
    output[1, 8:10, 0, 0] = 10.0

    heatmap_loss = RecordingLoss([0.125, 0.0625])
    criterion = BottomUpCriterion(heatmap_loss, BottomUpLayout(1), centre_offset=2.0, size=0.5,
                                  joint_offsets=3.0, joint_offset=4.0)
    terms = criterion.terms(output, batch)
    # centre_offset: (0.5 + 0.5 + 0.5) / 3 centres x 2; size: (2 + 8 + 1) / 3 x 0.5;
    # joint_offsets: (0.5 + 0.5) / 2 labelled joints x 3; joint_offset: (0.5 + 0.75) / 2 x 4
    expected = {"centre": 0.125, "joints": 0.0625, "centre_offset": 1.0, "size": 11.0 / 6.0,
                "joint_offsets": 1.5, "joint_offset": 2.5}
    assert set(terms) == set(expected)
    for name, value in expected.items():
        assert float(terms[name]) == pytest.approx(value, abs=1e-6), name
    assert float(criterion(output, batch)) == pytest.approx(sum(expected.values()), abs=1e-6)
    # the heatmap loss saw the centre logits against target channel 0, the joint logits against 1:
    (centre_pred, centre_target), (joint_pred, joint_target) = heatmap_loss.calls[:2]
    assert centre_pred.shape == (2, 1, 2, 3) and torch.all(centre_pred == 3.0)
    assert joint_pred.shape == (2, 1, 2, 3) and torch.all(joint_pred == -2.0)
    assert centre_target.shape == joint_target.shape == (2, 1, 2, 3)
    assert torch.equal(centre_target, batch["heatmaps"][:, :1]) and torch.equal(joint_target, batch["heatmaps"][:, 1:])


def test_the_perfect_output_has_no_regression_loss_also_with_padding_and_an_empty_image():
    codec = BottomUpCodec((128, 128), 5, stride=4)
    samples = [codec.encode(PEOPLE_KEYPOINTS, PEOPLE_VISIBLE, PEOPLE_BOXES),
               codec.encode(PEOPLE_KEYPOINTS[1:2], PEOPLE_VISIBLE[1:2], PEOPLE_BOXES[1:2]),
               codec.encode(np.zeros((0, 5, 2)), np.zeros((0, 5), bool), np.zeros((0, 4)))]
    output = torch.stack([perfect_output(codec, s) for s in samples])
    batch = collate_samples(samples)
    assert batch["centre_mask"].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    terms = BottomUpCriterion(RecordingLoss([0.0, 0.0]), codec.layout).terms(output, batch)
    for name in ("centre_offset", "size", "joint_offsets", "joint_offset"):
        assert float(terms[name]) == pytest.approx(0.0, abs=1e-6), name
    # and the L1 terms are not blind: half a pixel off on B's size, read at its centre pixel
    y, x = divmod(int(batch["centre_index"][1, 0]), codec.heatmap_size[1])
    output[1, 3, y, x] += 0.5
    terms = BottomUpCriterion(RecordingLoss([0.0, 0.0]), codec.layout).terms(output, batch)
    assert float(terms["size"]) == pytest.approx(0.1 * 0.5 / 4, abs=1e-6)  # weight 0.1, 4 labelled centres


def test_the_configured_weights_reach_the_criterion():
    from heatmapnet.build import build_criterion
    from heatmapnet.config import load_config

    config = load_config("people_bottomup", ["bottomup.size_weight=0.25", "bottomup.joint_offset_weight=3"])
    criterion = build_criterion(config, load_scheme("coco17"))
    assert isinstance(criterion, BottomUpCriterion)
    assert criterion.weights == {"centre_offset": 1.0, "size": 0.25, "joint_offsets": 1.0, "joint_offset": 3.0}
    assert criterion.layout.num_outputs == 7 + 3 * 17


# ----------------------------------------------------------------------------------------------
# flip test
# ----------------------------------------------------------------------------------------------
def _mirrored_people(width=128):
    """The people as a mirrored sample sees them: x -> W - 1 - x (pixel centres at integers), a box
    [x, x + w] -> [W - 1 - x - w, W - 1 - x], and left/right joints swapped."""
    keypoints = PEOPLE_KEYPOINTS.copy()
    keypoints[..., 0] = width - 1 - keypoints[..., 0]
    boxes = PEOPLE_BOXES.copy()
    boxes[:, 0] = width - 1 - boxes[:, 0] - boxes[:, 2]
    return keypoints[:, FIVE_FLIP], PEOPLE_VISIBLE[:, FIVE_FLIP], boxes


def test_flip_back_turns_the_mirrored_images_perfect_maps_into_the_originals():
    codec = BottomUpCodec((128, 128), 5, stride=4)
    original = perfect_output(codec, codec.encode(PEOPLE_KEYPOINTS, PEOPLE_VISIBLE, PEOPLE_BOXES))
    mirrored = perfect_output(codec, codec.encode(*_mirrored_people()))
    # (no heatmap coordinate has a fractional part of exactly .5, where mirrored rounding would differ)
    assert not np.any(np.isclose(np.abs(to_heatmap(PEOPLE_KEYPOINTS) % 1), 0.5))
    back = codec.flip_back(mirrored[None], FIVE_FLIP)[0]
    assert back.shape == original.shape
    np.testing.assert_allclose(back.numpy(), original.numpy(), rtol=0, atol=2e-5)
    # not vacuous: the mirrored maps differ from the original ones
    assert float((mirrored - original).abs().max()) > 0.5

    # flip test through heatmap_probabilities: a model that sees either image and answers with its
    # perfect maps gives the original maps back (the average of two equal maps)
    image = torch.rand(1, 3, 128, 128)

    class PerfectModel:
        def heatmaps(self, images):
            if torch.equal(images, image):
                return original[None].clone()
            assert torch.equal(images, image.flip(dims=[3]))
            return mirrored[None].clone()

    averaged = heatmap_probabilities(PerfectModel(), image, FIVE_FLIP, codec)
    np.testing.assert_allclose(averaged[0].numpy(), original.numpy(), rtol=0, atol=2e-5)


# ----------------------------------------------------------------------------------------------
# the dataset
# ----------------------------------------------------------------------------------------------
def _person(box, visible=(True,) * 5):
    """A five-joint person spread over ``box`` (x, y, w, h): head, hands, feet."""
    x, y, w, h = box
    shape = np.array([[0.5, 0.1], [0.9, 0.45], [0.1, 0.45], [0.65, 0.95], [0.35, 0.95]])
    return Instance(np.array([x, y]) + shape * np.array([w, h]), np.array(visible), np.array(box, float))


def _image_record(people, width=200, height=100, image_id=None):
    return Record(f"in-memory-{image_id}.png", width, height, people, image_id=image_id,
                  image=np.zeros((height, width, 3), np.uint8))


def _dataset(records):
    return BottomUpDataset(records, BottomUpCodec((128, 128), 5, stride=4), 5, FIVE_FLIP, NO_AUGMENTATION)


def _first_sample(records, params=None):
    """Sample 0 of the dataset of ``records``, its augmentation drawn as ``params`` (None: none)."""
    with pytest.MonkeyPatch.context() as patch:
        if params is not None:
            patch.setattr(AffineParams, "sample", staticmethod(lambda rng, augmentation: params))
        return _dataset(records)[0]


# A 200 x 100 image letterboxed onto 128 x 128: zoom 0.64, x' = 0.64 x - 0.18, y' = 0.64 y + 31.82
# (edges -0.5 and 199.5 -> -0.5 and 127.5; the 64-pixel-high picture centred vertically).
# The box (50, 20, 40, 60): corners x 50, 90 -> 31.82, 57.42; y 20, 80 -> 44.62, 83.02.
# Rotated 90 degrees about the input centre (63.5, 63.5): (u, v) -> (v, 127 - u), so
# X = 0.64 y + 31.82 in [44.62, 83.02], Y = 127.18 - 0.64 x in [69.58, 95.18].
# Mirrored: X = 127 - u = 127.18 - 0.64 x in [69.58, 95.18], Y as letterboxed.
@pytest.mark.parametrize("params, box", [
    (None, [31.82, 44.62, 25.6, 38.4]),
    (AffineParams(1.0, 90.0, (0.0, 0.0), False), [44.62, 69.58, 38.4, 25.6]),
    (AffineParams(1.0, 0.0, (0.0, 0.0), True), [69.58, 44.62, 25.6, 38.4]),
], ids=["letterbox", "rotated-90", "mirrored"])
def test_sample_boxes_follow_the_affine_transform(params, box):
    record = _image_record([_person([50.0, 20.0, 40.0, 60.0])])
    sample = _first_sample([record], params)
    np.testing.assert_allclose(sample["boxes"][0].numpy(), box, rtol=0, atol=1e-4)
    # the targets are the box's: its size in heatmap pixels, its centre's nearest pixel
    np.testing.assert_allclose(sample["size"][0].numpy(), np.array(box[2:]) / 4, rtol=0, atol=1e-5)
    centre = nearest_pixel(to_heatmap(np.array(box[:2]) + np.array(box[2:]) / 2))
    assert int(sample["centre_index"][0]) == centre[1] * 32 + centre[0]


def test_a_rotated_box_is_the_bound_of_its_rotated_corners():
    # 45 degrees: the 40 x 60 box (25.6 x 38.4 after the zoom) spans (25.6 + 38.4) / sqrt(2) both ways;
    # its centre (70, 50) -> (44.62, 63.82), rotated about (63.5, 63.5):
    # (63.5 + (-18.88 + 0.32) / sqrt 2, 63.5 + (18.88 + 0.32) / sqrt 2)
    record = _image_record([_person([50.0, 20.0, 40.0, 60.0])])
    sample = _first_sample([record], AffineParams(1.0, 45.0, (0.0, 0.0), False))
    side = 64.0 / math.sqrt(2.0)
    centre = np.array([63.5 + (-18.88 + 0.32) / math.sqrt(2.0), 63.5 + (18.88 + 0.32) / math.sqrt(2.0)])
    np.testing.assert_allclose(sample["boxes"][0].numpy(), [*(centre - side / 2), side, side], rtol=0, atol=1e-4)


def test_collate_pads_people_of_images_with_different_counts_with_zero_masks():
    records = [_image_record([_person([50.0, 20.0, 40.0, 60.0]), _person([120.0, 10.0, 30.0, 80.0])]),
               _image_record([_person([10.0, 5.0, 50.0, 90.0], visible=(True, True, False, True, True))]),
               _image_record([])]
    dataset = _dataset(records)
    batch = collate_samples([dataset[i] for i in range(3)])
    assert batch["num_instances"].tolist() == [2, 1, 0]
    assert batch["heatmaps"].shape == (3, 6, 32, 32)
    assert batch["centre_mask"].tolist() == [[1, 1], [1, 0], [0, 0]]
    assert batch["joint_offsets_mask"].tolist() == [[[1] * 5, [1] * 5], [[1, 1, 0, 1, 1], [0] * 5], [[0] * 5] * 2]
    assert batch["joint_mask"][1:].sum().item() == 4 and batch["joint_mask"][0].sum().item() == 10
    assert batch["boxes"].shape == (3, 2, 4)
    assert torch.all(batch["boxes"][1, 1] == 0) and torch.all(batch["boxes"][2] == 0)
    assert float(batch["heatmaps"][2].abs().sum()) == 0.0  # the empty image has nothing to find


def test_perfect_maps_of_a_letterboxed_sample_decode_to_the_original_people(cpu_path):
    """Dataset -> targets -> perfect maps -> mode.decode_batch with the inverse of the sample's
    matrix: people in original image pixels, as annotated."""
    people = [_person([50.3, 20.2, 40.0, 60.0]), _person([120.6, 8.1, 30.0, 80.0])]
    record = _image_record(people, image_id=7)
    dataset = _dataset([record])
    sample = dataset[0]
    maps = perfect_output(dataset.codec, sample)[None]
    back = invert_affine_batch(sample["matrix"][None])
    predictions = BottomUpMode().decode_batch(dataset.codec, maps, back, np.array([0]))
    found = predictions.person_scores >= 0.1
    assert found.sum() == 2 and predictions.record_index.tolist() == [0] * 20
    kept = np.flatnonzero(found)
    heads = predictions.keypoints[kept, 0]
    order = [int(np.argmin(np.linalg.norm(heads - p.keypoints[0], axis=1))) for p in people]
    assert sorted(order) == [0, 1]
    for person, row in zip(people, kept[order]):
        np.testing.assert_allclose(predictions.keypoints[row], person.keypoints, rtol=0, atol=2e-4)
        np.testing.assert_allclose(predictions.scores[row], 1.0, rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------
# OKS AP of people
# ----------------------------------------------------------------------------------------------
COCO17 = load_scheme("coco17")


def _coco_person(box, seed, unlabelled=()):
    """17 joints drawn inside ``box`` (fixed by ``seed``), the listed ones unlabelled."""
    x, y, w, h = box
    rng = np.random.default_rng(seed)
    keypoints = np.array([x, y]) + rng.uniform(0.1, 0.9, size=(17, 2)) * np.array([w, h])
    visible = np.ones(17, bool)
    visible[list(unlabelled)] = False
    return Instance(keypoints, visible, np.array(box, float))


@pytest.fixture
def crowd_records():
    """Image 11: two people; image 12: one person; image 13: nobody."""
    return [
        Record("a.jpg", 640, 480, [_coco_person([40, 30, 150, 300], 0), _coco_person([300, 60, 120, 260], 1, [3, 4])],
               image_id=11),
        Record("b.jpg", 640, 480, [_coco_person([200, 100, 110, 220], 2, [0, 15, 16])], image_id=12),
        Record("c.jpg", 640, 480, [], image_id=13),
    ]


def _truth_as_predictions(records, which=None, shift=None):
    """Each annotated person of the records (all, or the (record, instance) pairs ``which``) as a
    prediction scoring 1, its keypoints moved by ``shift`` (K, 2) if given."""
    rows = [(r, i) for r, record in enumerate(records) for i in range(len(record.instances))]
    rows = rows if which is None else [row for row in rows if row in which]
    keypoints = np.stack([records[r].instances[i].keypoints for r, i in rows]).reshape(len(rows), 17, 2)
    if shift is not None:
        keypoints = keypoints + shift
    return PeoplePredictions(np.array([r for r, _ in rows], np.int64), keypoints, np.ones((len(rows), 17)),
                             np.ones(len(rows)))


def test_ground_truth_as_predictions_scores_an_oks_ap_of_one(crowd_records):
    metrics = people_metrics(crowd_records, _truth_as_predictions(crowd_records), [0, 1, 2], COCO17)
    assert metrics["oks_ap"] == pytest.approx(1.0) and metrics["oks_ar"] == pytest.approx(1.0)
    assert metrics["num_people_predicted"] == 3


def test_people_moved_far_away_score_zero(crowd_records):
    metrics = people_metrics(crowd_records, _truth_as_predictions(crowd_records, shift=np.array([500.0, 0.0])),
                             [0, 1, 2], COCO17)
    assert metrics["oks_ap"] == 0.0 and metrics["oks_ar"] == 0.0


def test_oks_uses_the_schemes_sigmas_and_the_box_area(crowd_records):
    # move joint k by d_k = 2 sigma_k sqrt(area) sqrt(2 ln(1 / 0.775)): each joint's OKS term is
    # exp(-d^2 / (2 area (2 sigma_k)^2)) = 0.775, so every person matches at OKS 0.50 ... 0.75
    # (6 of the 10 thresholds): AP = 0.6, AP50 = AP75 = 1.
    people = [person for record in crowd_records for person in record.instances]
    shifts = []
    for person in people:
        area = person.bbox[2] * person.bbox[3]
        d = 2.0 * np.asarray(COCO17.oks_sigmas) * math.sqrt(area) * math.sqrt(2.0 * math.log(1.0 / 0.775))
        shifts.append(np.stack([d / math.sqrt(2.0), d / math.sqrt(2.0)], axis=1))
    predictions = _truth_as_predictions(crowd_records)
    predictions.keypoints = predictions.keypoints + np.stack(shifts)
    metrics = people_metrics(crowd_records, predictions, [0, 1, 2], COCO17)
    assert metrics["oks_ap"] == pytest.approx(0.6, abs=1e-9)
    assert metrics["oks_ap50"] == pytest.approx(1.0) and metrics["oks_ap75"] == pytest.approx(1.0)
    assert metrics["oks_ar"] == pytest.approx(0.6, abs=1e-9)


def test_people_missed_in_an_image_without_predictions_count(crowd_records):
    # image 12's person is never predicted: recall 2 / 3 at precision 1, so COCO's 101-point
    # interpolated precision is 1 at recall 0.00 ... 0.66 (67 points) and 0 above: AP = 67 / 101
    predictions = _truth_as_predictions(crowd_records, which={(0, 0), (0, 1)})
    metrics = people_metrics(crowd_records, predictions, [0, 1, 2], COCO17)
    assert metrics["oks_ap"] == pytest.approx(67 / 101, abs=1e-9)
    assert metrics["oks_ar"] == pytest.approx(2 / 3, abs=1e-9)
    # nobody predicted anywhere
    empty = PeoplePredictions(np.zeros(0, np.int64), np.zeros((0, 17, 2)), np.zeros((0, 17)), np.zeros(0))
    metrics = people_metrics(crowd_records, empty, [0, 1, 2], COCO17)
    assert metrics["oks_ap"] == 0.0 and metrics["num_people_predicted"] == 0


def test_an_empty_image_decodes_to_candidates_that_cost_no_precision(crowd_records, cpu_path):
    # the image without people: all-zero maps decode to max_people candidates of score 0, none
    # reported by the predictor; ranked below every real person they leave AP at 1
    codec = BottomUpCodec((128, 128), 17, stride=4, max_people=20)
    mode = BottomUpMode()
    back = torch.tensor([[[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]]], dtype=torch.float64)
    empty = mode.decode_batch(codec, torch.zeros(1, codec.num_outputs, 32, 32), back, np.array([2]))
    assert len(empty.record_index) == 20 and np.all(empty.person_scores == 0.0)
    assert mode.image_results(empty, COCO17) == []
    predictions = mode.concatenate([_truth_as_predictions(crowd_records), empty])
    metrics = people_metrics(crowd_records, predictions, [0, 1, 2], COCO17)
    assert metrics["oks_ap"] == pytest.approx(1.0) and metrics["num_people_predicted"] == 23


def test_people_results_are_coco_keypoint_results(crowd_records):
    predictions = _truth_as_predictions(crowd_records)
    predictions.person_scores = np.array([0.9, 0.8, 0.7])
    results = people_results(crowd_records, predictions)
    assert [r["image_id"] for r in results] == [11, 11, 12]  # the records' own ids
    assert [r["score"] for r in results] == pytest.approx([0.9, 0.8, 0.7])
    assert all(r["category_id"] == 1 and len(r["keypoints"]) == 51 for r in results)
    first = np.asarray(results[0]["keypoints"]).reshape(17, 3)
    np.testing.assert_allclose(first[:, :2], crowd_records[0].instances[0].keypoints, rtol=0, atol=5e-4)
    assert np.all(first[:, 2] == 1.0)
    assert [r["image_id"] for r in people_results(crowd_records, predictions, use_record_index=True)] == [0, 0, 1]


# ----------------------------------------------------------------------------------------------
# the command line, end to end
# ----------------------------------------------------------------------------------------------
TINY = ["data.input_size=[128,128]", "data.num_workers=0", "model.backbone=mobilenetv3_small_050",
        "model.head_channels=16", "train.steps=2", "train.batch_size=4", "train.warmup_steps=1",
        "train.eval_every=1000", "train.checkpoint_every=1000", "train.log_every=1", "eval.batch_size=4",
        "train.threads=2", "eval.max_people=20"]
PEOPLE = TINY + ["data.train.num_samples=16", "data.val.num_samples=3"]


@pytest.fixture(scope="module")
def people_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bottomup") / "run"
    assert main(["train", "people_bottomup", "--out", str(out), "--set", *PEOPLE]) == 0
    return out


def _check_people_results(results, image_ids, max_people=20, num_keypoints=17):
    """COCO keypoint results of every decoded candidate: max_people per evaluated image."""
    assert sorted(r["image_id"] for r in results) == sorted(list(image_ids) * max_people)
    for entry in results:
        assert entry["category_id"] == 1
        assert len(entry["keypoints"]) == 3 * num_keypoints
        assert all(math.isfinite(v) for v in entry["keypoints"])


@pytest.mark.slow
def test_training_people_bottomup_writes_oks_ap(people_run):
    summary = json.loads((people_run / "metrics.json").read_text())
    final = summary["final"]
    assert final["num_people_predicted"] == 3 * 20  # every candidate of the 3 validation images
    assert summary["steps"] == 2
    # the one evaluation (eval_every > steps) is the final one, and it is the best by OKS AP; what
    # its AP means is checked on hand-derived maps (the constant model below), that it is the AP
    # of the saved weights by ``heatmapnet eval`` (the next test)
    assert summary["best"] == {"name": "oks_ap", "value": final["oks_ap"], "step": 2}
    assert (people_run / "last.pt").is_file()


def test_eval_of_a_model_with_constant_maps_writes_the_people_worked_out_by_hand(tmp_path):
    """A checkpoint whose classifier weights are 0 outputs its biases everywhere: centre logit ln 3
    (sigmoid 3/4), joint logits 0 (1/2), box size 8 x 8 heatmap px, offsets 0. On a constant map
    every pixel is a peak and equal scores come by pixel index, so the 20 candidates of each image
    are the centres at heatmap pixels (t, 0), t = 0 .. 19, each joint snapped to the joint peak at
    its own centre pixel: all 17 joints at input (4 t + 1.5, 1.5), scored 1/2, the person scored
    3/4 x 1/2 (``eval.person_score`` centre_x_joints). Back in the image's pixels through the
    letterbox (zoom z = 128 / the longer side, the image centred, pixel centres on pixel centres):
    x = (4 t + 1.5 - ox) / z, y = (1.5 - oy) / z with o = (128 - z size) / 2 - 1/2 + z / 2.
    Every candidate lies on one point at least 15 px above each person's box: no OKS near 0.5, so
    OKS AP and AR are 0."""
    from omegaconf import OmegaConf

    from heatmapnet.build import build_model, build_scheme, read_records
    from heatmapnet.checkpoint import save_checkpoint
    from heatmapnet.config import load_config

    config = load_config("people_bottomup", PEOPLE)
    assert config.eval.person_score == "centre_x_joints" and tuple(config.data.input_size) == (128, 128)
    scheme = build_scheme(config)
    state = build_model(config, scheme).state_dict()
    state["head.classifier.weight"].zero_()
    bias = state["head.classifier.bias"]
    bias.zero_()
    bias[0] = math.log(3.0)  # the centre channel
    bias[3:5] = 8.0  # the box size
    checkpoint = tmp_path / "constant.pt"
    save_checkpoint(checkpoint, config=OmegaConf.to_container(config), scheme=scheme, model=state, step=0)
    assert main(["eval", "people_bottomup", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "eval"),
                 "--set", *PEOPLE]) == 0

    results = json.loads((tmp_path / "eval" / "predictions.json").read_text())
    records = read_records(config, "val")
    for index, record in enumerate(records):
        height, width = record.image.shape[:2]
        zoom = 128.0 / max(width, height)
        ox, oy = ((128.0 - zoom * np.array([width, height])) / 2.0 - 0.5 + zoom / 2.0)
        expected = np.array([[(4 * t + 1.5 - ox) / zoom, (1.5 - oy) / zoom] for t in range(20)])
        mine = [r for r in results if r["image_id"] == index]
        assert len(mine) == 20
        assert [r["score"] for r in mine] == pytest.approx([0.375] * 20, abs=1e-6)
        keypoints = np.array([r["keypoints"] for r in mine]).reshape(20, 17, 3)
        np.testing.assert_allclose(keypoints[..., 2], 0.5, rtol=0, atol=1e-6)
        found = keypoints[..., :2][np.argsort(keypoints[:, 0, 0])]
        np.testing.assert_allclose(found, np.repeat(expected[:, None], 17, axis=1), rtol=0, atol=1e-3)
        top = min(person.bbox[1] for person in record.instances)
        assert expected[0, 1] < top - 15
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    assert metrics["num_people_predicted"] == 3 * 20
    assert metrics["oks_ap"] == 0.0 and metrics["oks_ar"] == 0.0


@pytest.mark.slow
def test_eval_writes_coco_keypoint_results_and_predict_returns_people_without_boxes(people_run, tmp_path, capsys):
    from heatmapnet.build import read_records
    from heatmapnet.config import load_config
    from heatmapnet.predict import Predictor

    checkpoint = people_run / "last.pt"
    assert main(["eval", "people_bottomup", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "eval"),
                 "--set", *PEOPLE]) == 0
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    trained = json.loads((people_run / "metrics.json").read_text())["final"]
    assert evaluated["metrics"]["oks_ap"] == pytest.approx(trained["oks_ap"], abs=1e-9)  # same weights, images
    results = json.loads((tmp_path / "eval" / "predictions.json").read_text())
    _check_people_results(results, image_ids=[0, 1, 2])  # synthetic records have no id: their index

    # the first validation image as a file: predict finds the people eval found there
    record = read_records(load_config("people_bottomup", PEOPLE), "val")[0]
    image_path = tmp_path / "crowd.png"
    cv2.imwrite(str(image_path), record.image)
    capsys.readouterr()
    assert main(["predict", str(image_path), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "p.json")]) == 0
    written = json.loads((tmp_path / "p.json").read_text())
    assert len(written) == 1 and written[0]["image_path"] == str(image_path)
    people = written[0]["predictions"]
    mine = [r for r in results if r["image_id"] == 0]
    for person in people:
        assert set(person) == {"score", "keypoints", "scores", "keypoint_names"}  # no bbox
        assert person["score"] >= 0.3 and np.asarray(person["keypoints"]).shape == (17, 2)
    # the predictor reports the candidates scoring 0.3 or more (eval's maps came from a batch of
    # three images, so scores may differ in the last bits)
    assert sum(r["score"] >= 0.3 + 1e-5 for r in mine) <= len(people) <= sum(r["score"] >= 0.3 - 1e-5 for r in mine)
    # with no minimum score the predictor returns all 20 candidates, the ones eval wrote for the image
    predictor = Predictor(checkpoint)
    predictor.mode.min_score = 0.0
    everyone = predictor(str(image_path))
    assert len(everyone) == 20
    assert [p["score"] for p in everyone] == sorted((p["score"] for p in everyone), reverse=True)
    matched = set()
    for person in everyone:
        distances = [np.abs(np.asarray(person["keypoints"]) - np.asarray(r["keypoints"]).reshape(17, 3)[:, :2]).max()
                     for r in mine]
        best = int(np.argmin(distances))
        matched.add(best)
        assert distances[best] <= 2e-3
        assert person["score"] == pytest.approx(mine[best]["score"], abs=1e-5)
        np.testing.assert_allclose(person["scores"], np.asarray(mine[best]["keypoints"]).reshape(17, 3)[:, 2],
                                   rtol=0, atol=2e-3)
    assert len(matched) == 20


@pytest.mark.slow
def test_coco_custom_trains_and_evaluates_bottom_up_on_the_coco_fixture(shared_data, tmp_path):
    coco = shared_data / "fixtures" / "coco"
    paths = [f"data.{split}.{key}={value}" for split in ("train", "val")
             for key, value in (("ann_file", coco / "test_coco.json"), ("img_dir", coco))]
    overrides = ["data.mode=bottomup", *paths, *TINY]
    out = tmp_path / "run"
    assert main(["train", str(REPO / "configs" / "coco_custom.yaml"), "--out", str(out), "--set", *overrides]) == 0
    final = json.loads((out / "metrics.json").read_text())["final"]
    assert final["num_people_predicted"] == 4 * 20
    assert main(["eval", "coco_custom", "--checkpoint", str(out / "last.pt"), "--out", str(tmp_path / "eval"),
                 "--set", *overrides]) == 0
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    for name in ("oks_ap", "oks_ar", "num_people_predicted"):  # the saved weights on the same images
        assert evaluated[name] == pytest.approx(final[name], abs=1e-9), name
    results = json.loads((tmp_path / "eval" / "predictions.json").read_text())
    _check_people_results(results, image_ids=[785, 40083, 196141, 197388])  # COCO's own image ids


# ----------------------------------------------------------------------------------------------
# peak finding and snapping: the C kernel (top_peaks) and the PyTorch path
# ----------------------------------------------------------------------------------------------
def reference_peaks(maps, k, threshold=-math.inf):
    """Each map's k best peaks (N, H, W) -> values (N, k), flat indices (N, k), one pixel at a time
    by the definition: >= every in-map pixel of its 3 x 3 window (a NaN there fails), not NaN,
    > -inf, >= threshold in float32; value descending, equal values by the lower index; padded
    with -inf and -1."""
    maps = np.asarray(maps, dtype=np.float32)
    count, height, width = maps.shape
    threshold = np.float32(threshold)
    values, index = np.full((count, k), -np.inf, np.float32), np.full((count, k), -1, np.int64)
    for n in range(count):
        found = []
        for y in range(height):
            for x in range(width):
                v = maps[n, y, x]
                window = maps[n, max(y - 1, 0):y + 2, max(x - 1, 0):x + 2]
                if v >= threshold and v > -np.inf and np.all(v >= window):
                    found.append((-float(v), y * width + x))
        found.sort()
        for i, (negative, flat) in enumerate(found[:k]):
            values[n, i], index[n, i] = maps[n].flat[flat], flat
    return values, index


def tricky_maps(shape, seed):
    """Maps full of ties: small integers (plateaus, equal peaks), and some NaN, +-inf and -0.0."""
    rng = np.random.default_rng(seed)
    maps = rng.integers(0, 4, size=shape).astype(np.float32)
    for value, share in ((np.nan, 0.03), (np.inf, 0.02), (-np.inf, 0.05), (-0.0, 0.1)):
        maps[rng.uniform(size=shape) < share] = value
    return torch.from_numpy(maps)


@pytest.mark.parametrize("height, width", [(1, 1), (1, 7), (7, 1), (5, 17), (4, 18), (6, 19), (9, 40), (12, 35)])
@pytest.mark.parametrize("threshold", [-math.inf, 1.0, 2.5, math.nan])
def test_top_peaks_follow_their_definition_with_ties_nan_inf_and_borders(height, width, threshold, cpu_path):
    maps = tricky_maps((2, 4, height, width), seed=height * 100 + width)
    for k in (0, 1, 5, height * width + 3):
        values, index = bottomup.top_peaks(maps, slice(1, 3), k, threshold)
        assert values.shape == index.shape == (2, 2, k) and values.dtype == torch.float32
        expected_values, expected_index = reference_peaks(maps[:, 1:3].reshape(-1, height, width), k, threshold)
        np.testing.assert_array_equal(index.reshape(4, k).numpy(), expected_index, err_msg=f"k={k}")
        np.testing.assert_array_equal(values.reshape(4, k).numpy(), expected_values, err_msg=f"k={k}")


def test_top_peaks_take_every_pixel_of_a_plateau_and_order_equal_values_by_index(cpu_path):
    maps = torch.zeros(1, 1, 4, 6)
    maps[0, 0, 1, 1:3] = 2.0  # a plateau of two pixels
    maps[0, 0, 3, 5] = 2.0  # an equal peak in the corner
    maps[0, 0, 0, 5] = 3.0
    values, index = bottomup.top_peaks(maps, slice(0, 1), 5, threshold=0.5)
    assert values[0, 0].tolist() == [3.0, 2.0, 2.0, 2.0, -math.inf]
    assert index[0, 0].tolist() == [5, 7, 8, 23, -1]
    # -0.0 equals 0.0: the lower index first whichever sign it has
    maps = torch.tensor([[[[0.0, -1.0, -0.0]]]])
    values, index = bottomup.top_peaks(maps, slice(0, 1), 3)
    assert index[0, 0].tolist() == [0, 2, -1]


def test_the_c_kernel_and_the_pytorch_path_find_the_same_peaks_in_network_like_maps(c_kernels):
    maps, codec = people_maps(3, 17, 48, (4, 12))
    maps[1] = torch.round(maps[1] * 8) / 8  # coarse values: plateaus and equal peaks everywhere
    found = []
    for enabled in (True, False):
        with use_kernels(enabled):
            found.append([bottomup.top_peaks(maps, codec.layout.centre, 32),
                          bottomup.top_peaks(maps, codec.layout.joints, 100, 0.1)])
    for (kernel_values, kernel_index), (torch_values, torch_index) in zip(*found):
        assert torch.equal(kernel_index, torch_index) and torch.equal(kernel_values, torch_values)
    assert int((found[0][1][1] >= 0).sum()) > 100  # not vacuous


@pytest.mark.parametrize("seed", [3, 5])
def test_the_peaks_are_the_pixels_equal_to_their_3x3_max_pool_with_nan_and_inf(seed, cpu_path):
    import torch.nn.functional as F

    maps = tricky_maps((2, 3, 11, 13), seed=seed)
    pooled = F.max_pool2d(maps, 3, stride=1, padding=1)  # -inf padding; a NaN in the window: NaN
    peak = (pooled == maps) & (maps > -math.inf)
    values, index = bottomup.top_peaks(maps, slice(0, 3), 11 * 13)  # every peak of every map
    for b in range(2):
        for c in range(3):
            found = index[b, c][index[b, c] >= 0]
            assert sorted(found.tolist()) == torch.flatten(peak[b, c]).nonzero()[:, 0].tolist()
            assert torch.equal(values[b, c][:len(found)], maps[b, c].flatten()[found])
    assert int(peak.sum()) > 20  # not vacuous


def test_the_peak_kernel_checks_its_arguments(c_kernels):
    maps = np.zeros((2, 3, 4, 5), np.float32)
    values, index = np.empty((2, 2, 4), np.float32), np.empty((2, 2, 4), np.int64)
    c_kernels.top_peaks(maps, 4, 5, 3, 1, 2, 4, 0.5, values, index)  # fits
    assert np.all(index == -1) and np.all(values == -np.inf)  # no pixel reaches 0.5
    with pytest.raises(ValueError, match="values"):
        c_kernels.top_peaks(maps, 4, 5, 3, 1, 2, 4, 0.5, np.empty((2, 1, 4), np.float32), index)
    with pytest.raises(ValueError, match="indices"):
        c_kernels.top_peaks(maps, 4, 5, 3, 1, 2, 4, 0.5, values, np.empty((2, 2, 4), np.int32))
    with pytest.raises(ValueError, match="maps"):
        c_kernels.top_peaks(maps.reshape(-1)[:-1], 4, 5, 3, 1, 2, 4, 0.5, values, index)  # not whole items
    with pytest.raises(ValueError, match="first, count"):
        c_kernels.top_peaks(maps, 4, 5, 3, 2, 2, 4, 0.5, values, index)
    with pytest.raises(ValueError, match="k must be"):
        c_kernels.top_peaks(maps, 4, 5, 3, 1, 2, -1, 0.5, values, index)
    with pytest.raises(ValueError, match="height, width and channels"):
        c_kernels.top_peaks(maps, 0, 5, 3, 1, 2, 4, 0.5, values, index)
    with pytest.raises(ValueError, match="maps: .* too many bytes"):  # sizes that overflow
        c_kernels.top_peaks(maps, 2 ** 40, 2 ** 40, 3, 1, 2, 4, 0.5, values, index)
    with pytest.raises(ValueError, match="values, indices: .* too many"):
        c_kernels.top_peaks(maps, 4, 5, 3, 1, 2, 2 ** 62, 0.5, values, index)
    with pytest.raises(TypeError, match="values"):
        c_kernels.top_peaks(maps, 4, 5, 3, 1, 2, 4, 0.5, bytes(64), index)


def test_both_cpu_paths_decode_crowds_identically(c_kernels):
    maps, codec = people_maps(4, 17, 48, (4, 12))
    maps[2:, codec.layout.heatmap_channels] = torch.round(maps[2:, codec.layout.heatmap_channels] * 8) / 8  # ties
    decoded = []
    for enabled in (True, False):
        with use_kernels(enabled):
            decoded.append(codec.decode(maps, max_people=20))
    for name, kernel, pytorch in zip(decoded[0]._fields, *decoded):
        assert torch.equal(kernel, pytorch), name
    snapped = decoded[0].snapped[:, :8]
    assert snapped.float().mean() > 0.3 and not snapped.all()  # not vacuous


def reference_decode(codec, maps, max_people):
    """The decode's documented rules, one person and joint at a time in float32 numpy: centre
    peaks as candidates (padding read at pixel 0), regressed joints, each snapped to the nearest of
    its type's ``joint_candidates`` best peaks that is >= the threshold, inside the box and within
    snap_distance x the longer side (equal distances: the earlier peak), else regressed."""
    layout, maps = codec.layout, maps.numpy()
    batch, _, height, width = maps.shape
    num_keypoints = layout.num_keypoints
    people = min(max_people, height * width)
    candidates = min(max(people, codec.joint_candidates), height * width)
    shape = (batch, people, num_keypoints)
    scores, boxes = np.zeros((batch, people), np.float32), np.zeros((batch, people, 4), np.float32)
    points, point_scores = np.zeros(shape + (2,), np.float32), np.zeros(shape, np.float32)
    snapped = np.zeros(shape, bool)
    for b in range(batch):
        centre_values, centre_index = reference_peaks(maps[b, layout.centre], people)
        peak_values, peak_index = reference_peaks(maps[b, layout.joints], candidates, codec.joint_threshold)
        for t in range(people):
            y, x = divmod(max(int(centre_index[0, t]), 0), width)
            pixel = np.array([x, y], np.float32)
            centre = pixel + maps[b, layout.centre_offset, y, x]
            size = np.maximum(maps[b, layout.size, y, x], np.float32(0))
            low, high = centre - size / np.float32(2), centre + size / np.float32(2)
            limit = np.float32(codec.snap_distance) * size.max()
            scores[b, t] = centre_values[0, t]
            boxes[b, t] = [*(low * codec.stride + (codec.stride - 1) / 2), *(size * codec.stride)]
            for k in range(num_keypoints):
                regressed = pixel + maps[b, layout.joint_offsets, y, x].reshape(-1, 2)[k]
                best = None
                for j in range(candidates):
                    if peak_index[k, j] < 0:
                        break
                    py, px = divmod(int(peak_index[k, j]), width)
                    peak = np.array([px, py], np.float32) + maps[b, layout.joint_offset, py, px]
                    d = peak - regressed
                    distance = d[0] * d[0] + d[1] * d[1]
                    if np.all(peak >= low) and np.all(peak <= high) and distance <= limit * limit and \
                            (best is None or distance < best[0]):
                        best = (distance, peak, peak_values[k, j])
                if best is not None:
                    points[b, t, k], point_scores[b, t, k], snapped[b, t, k] = best[1], best[2], True
                else:
                    points[b, t, k] = regressed
                    rx, ry = (int(v) for v in np.floor(regressed + np.float32(0.5)))
                    on_map = 0 <= rx < width and 0 <= ry < height
                    point_scores[b, t, k] = maps[b, layout.joints.start + k, ry, rx] if on_map else 0.0
    return scores, points * codec.stride + (codec.stride - 1) / 2, point_scores, snapped, boxes


def test_decoding_crowds_follows_the_documented_rules(cpu_path):
    maps, codec = people_maps(2, 17, 32, (4, 8), seed=3)
    people = codec.decode(maps, max_people=12)
    scores, keypoints, keypoint_scores, snapped, boxes = reference_decode(codec, maps, 12)
    np.testing.assert_array_equal(people.scores.numpy(), scores)
    np.testing.assert_array_equal(people.snapped.numpy(), snapped)
    np.testing.assert_allclose(people.keypoints.numpy(), keypoints, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(people.keypoint_scores.numpy(), keypoint_scores)
    np.testing.assert_allclose(people.boxes.numpy(), boxes, rtol=0, atol=1e-4)
    assert 0.2 < snapped[:, :4].mean() < 1.0  # both kinds of joints among the real people


def test_equal_centre_scores_come_by_pixel_index_and_missing_candidates_score_minus_infinity(cpu_path):
    codec = BottomUpCodec((32, 32), 1, stride=4, max_people=5)
    maps = torch.zeros(1, 10, 8, 8)
    maps[0, 3:5] = torch.arange(64.0).view(8, 8)  # each pixel's size tells where a candidate was read
    for flat, score in ((54, 0.7), (20, 0.5), (9, 0.5)):
        maps[0, 0].view(-1)[flat] = score
    people = codec.decode(maps)
    assert people.scores[0].tolist() == pytest.approx([0.7, 0.5, 0.5, 0.0, 0.0])
    # the zero plateau's peaks are the pixels next to no person, 3 and 4 the first
    assert (people.boxes[0, :, 2] / 4).tolist() == [54, 9, 20, 3, 4]
    # a ramp has one peak: the other candidates score -inf and are read at pixel 0
    maps[0, 0] = torch.arange(64.0).view(8, 8) / 64
    people = codec.decode(maps, max_people=3)
    assert people.scores[0].tolist() == [63 / 64, -math.inf, -math.inf]
    assert (people.boxes[0, :, 2] / 4).tolist() == [63, 0, 0]


def test_of_equidistant_peaks_the_better_one_is_taken(cpu_path):
    codec = BottomUpCodec((64, 64), 1, stride=4, max_people=1)
    person = [(6, 8, 0.9, (8.0, 8.0), (0.0, 0.0))]  # regressed wrist (6, 8) + nothing: peaks 1 px either side
    for peaks, expected in [([(5, 8, 0.5), (7, 8, 0.6)], (7, 0.6)), ([(5, 8, 0.6), (7, 8, 0.5)], (5, 0.6)),
                            ([(7, 8, 0.5), (5, 8, 0.5)], (5, 0.5))]:  # equal scores: the lower index
        people = codec.decode(_hand_maps(peaks, person, joint_offset=(0.0, 0.0)))
        assert bool(people.snapped[0, 0, 0])
        assert float(people.keypoints[0, 0, 0, 0]) == pytest.approx(expected[0] * 4 + 1.5)
        assert float(people.keypoint_scores[0, 0, 0]) == pytest.approx(expected[1])


def test_only_the_joint_candidates_best_peaks_are_snapped_to(cpu_path):
    codec = BottomUpCodec((64, 64), 1, stride=4, max_people=1)
    person = [(6, 8, 0.9, (12.0, 12.0), (1.0, 0.0))]  # regressed wrist at (7, 8)
    maps = _hand_maps([(7, 8, 0.5), (9, 8, 0.9), (4, 8, 0.8)], person, joint_offset=(0.0, 0.0))
    assert float(codec.decode(maps).keypoints[0, 0, 0, 0]) == pytest.approx(7 * 4 + 1.5)
    codec.joint_candidates = 2  # the nearest peak is the third best: out of the running
    assert float(codec.decode(maps).keypoints[0, 0, 0, 0]) == pytest.approx(9 * 4 + 1.5)
