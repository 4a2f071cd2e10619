"""Values a COCO keypoints json may hold but no annotation can mean (heatmapnet.data.readers.coco):
NaN and Infinity (Python's json parses both literals), strings, nulls, booleans and nested lists
in a keypoints field, lists of the wrong length, visibility flags outside {0, 1, 2}, a
num_keypoints the flags contradict, a bbox that is not four finite numbers. Each is one line
naming the annotation id and the field, or, with skip_invalid, skipped and listed."""
import json

import numpy as np
import pytest
from PIL import Image

from heatmapnet.data import InvalidAnnotationError, read

NAN, INF = float("nan"), float("inf")
GOOD = {"id": 7, "image_id": 1, "category_id": 1, "num_keypoints": 2, "keypoints": [10, 10, 2, 20, 30, 1],
        "bbox": [5, 5, 30, 30], "iscrowd": 0}


def _json(tmp_path, annotation: dict, wholebody: bool = False) -> str:
    """A json of one 100 x 80 image with the annotation ``annotation`` (id 7) and a good one (id 8);
    written by json.dumps, which writes NaN and Infinity as those literals."""
    Image.new("RGB", (100, 80), (90, 120, 150)).save(tmp_path / "a.jpg")
    good = dict(GOOD, id=8)
    if wholebody:
        parts = {"foot_kpts": [0, 0, 0] * 6, "face_kpts": [0, 0, 0] * 68, "lefthand_kpts": [0, 0, 0] * 21,
                 "righthand_kpts": [0, 0, 0] * 21}
        good.update(parts, keypoints=[10, 10, 2] * 17, num_keypoints=17)
        annotation = {**parts, **annotation}
    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}],
            "categories": [{"id": 1, "name": "thing", "keypoints": [] if wholebody else ["p", "q"]}],
            "annotations": [annotation, good]}
    text = json.dumps(data)
    path = tmp_path / "ann.json"
    path.write_text(text)
    return str(path)


#: case -> (the annotation's changed fields, the field named, a phrase of the problem)
CASES = {
    "NaN x of a visible point": ({"keypoints": [10, 10, 2, NAN, 30, 2]}, "keypoints", "point 1's x is nan"),
    "Infinity y of an occluded point": ({"keypoints": [10, 10, 2, 20, INF, 1]}, "keypoints", "point 1's y is inf"),
    "-Infinity x of an unlabelled point": ({"keypoints": [10, 10, 2, -INF, 0, 0], "num_keypoints": 1},
                                           "keypoints", "point 1's x is -inf"),
    "NaN flag": ({"keypoints": [10, 10, NAN, 20, 30, 2]}, "keypoints", "point 0's v is nan"),
    "numeric string": ({"keypoints": [10, "10", 2, 20, 30, 2]}, "keypoints", "point 0's y is '10' (str), not a number"),
    "word": ({"keypoints": [10, 10, 2, "left", 30, 2]}, "keypoints", "point 1's x is 'left' (str)"),
    "null coordinate": ({"keypoints": [None, 10, 2, 20, 30, 2]}, "keypoints", "point 0's x is None (null)"),
    "null flag": ({"keypoints": [10, 10, 2, 20, 30, None]}, "keypoints", "point 1's v is None (null)"),
    "boolean flag": ({"keypoints": [10, 10, True, 20, 30, 2]}, "keypoints", "point 0's v is True (bool)"),
    "nested points": ({"keypoints": [[10, 10, 2], [20, 30, 2], [0, 0, 0]]}, "keypoints",
                      "point 0's x is [10, 10, 2] (list)"),
    "not a list": ({"keypoints": "10 10 2 20 30 2"}, "keypoints", "expected a flat list of x, y, v, got str"),
    "length not a multiple of 3": ({"keypoints": [10, 10, 2, 20, 30]}, "keypoints", "length 5 is not a multiple of 3"),
    "too few points": ({"keypoints": [10, 10, 2], "num_keypoints": 1}, "keypoints",
                       "wrong number of points: 1, expected 2"),
    "too many points": ({"keypoints": [10, 10, 2, 20, 30, 2, 1, 1, 2], "num_keypoints": 3}, "keypoints",
                        "wrong number of points: 3, expected 2"),
    "flag 3": ({"keypoints": [10, 10, 3, 20, 30, 2]}, "keypoints", "visibility flag(s) [3.0] at point(s) [0]"),
    "flag -1": ({"keypoints": [10, 10, 2, 20, 30, -1], "num_keypoints": 1}, "keypoints",
                "visibility flag(s) [-1.0] at point(s) [1]"),
    "flag 1.5": ({"keypoints": [10, 10, 1.5, 20, 30, 2]}, "keypoints", "visibility flag(s) [1.5] at point(s) [0]"),
    "num_keypoints above the flags": ({"num_keypoints": 3}, "num_keypoints",
                                      "says 3 labelled point(s), but only 2 have a visibility flag of 1 or 2"),
    "num_keypoints 0 with labelled points": ({"num_keypoints": 0}, "num_keypoints",
                                             "is 0 (an instance COCO ignores), but 2 point(s) have a visibility flag"),
    "labelled points claimed, none flagged": ({"keypoints": [10, 10, 0, 20, 30, 0]}, "num_keypoints",
                                              "says 2 labelled point(s), but only 0 have"),
    "num_keypoints a string": ({"num_keypoints": "2"}, "num_keypoints", "'2' (str) is not a count of points"),
    "num_keypoints NaN": ({"num_keypoints": NAN}, "num_keypoints", "nan (float) is not a count of points"),
    "num_keypoints fractional": ({"num_keypoints": 1.5}, "num_keypoints", "1.5 (float) is not a count of points"),
    "num_keypoints negative": ({"num_keypoints": -1}, "num_keypoints", "-1 (int) is not a count of points"),
    "bbox NaN": ({"bbox": [5, NAN, 30, 30]}, "bbox", "non-finite box"),
    "bbox Infinity": ({"bbox": [5, 5, INF, 30]}, "bbox", "non-finite box"),
    "bbox null value": ({"bbox": [5, None, 30, 30]}, "bbox", "y is None (null), not a number"),
    "bbox string value": ({"bbox": [5, 5, "30", 30]}, "bbox", "w is '30' (str), not a number"),
    "bbox a string": ({"bbox": "5 5 30 30"}, "bbox", "expected [x, y, w, h], four numbers, got str"),
    "bbox of three": ({"bbox": [5, 5, 30]}, "bbox", "expected [x, y, w, h], four numbers, got 3 values"),
    "iscrowd NaN": ({"iscrowd": NAN}, "iscrowd", "nan (float): expected 0 or 1"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_bad_value_is_one_line_naming_the_annotation_and_field(tmp_path, case):
    changes, field, phrase = CASES[case]
    path = _json(tmp_path, dict(GOOD, **changes))
    with pytest.raises(InvalidAnnotationError) as caught:
        read(path)
    message = str(caught.value)
    assert caught.value.field == field and "annotation id 7" in caught.value.where, message
    assert message.startswith(f"{path}, annotation id 7: field {field!r}: ") and phrase in message, message
    assert "\n" not in message


@pytest.mark.parametrize("case", sorted(CASES))
def test_with_skip_invalid_the_bad_annotation_is_skipped_and_listed(tmp_path, case):
    changes, field, phrase = CASES[case]
    with pytest.warns(UserWarning, match="skipped 1 invalid sample"):
        records = read(_json(tmp_path, dict(GOOD, **changes)), skip_invalid=True)
    assert [i.extra["annotation_id"] for r in records for i in r.instances] == [8]
    (reason,) = records.skipped
    assert "annotation id 7" in reason and f"field {field!r}" in reason and phrase in reason


def test_the_json_literals_are_what_the_file_holds():
    """The cases' NaN and Infinity reach the reader as the literals Python's json parses."""
    text = json.dumps({"keypoints": [NAN, INF, -INF]})
    assert text == '{"keypoints": [NaN, Infinity, -Infinity]}'
    parsed = json.loads(text)["keypoints"]
    assert np.isnan(parsed[0]) and parsed[1:] == [INF, -INF]


def test_good_values_still_read_and_fewer_labelled_than_flagged_is_allowed(tmp_path):
    """Integral floats are numbers; num_keypoints below the flagged count is CrowdPose's
    convention (it counts 12 of its 14 points) and reads."""
    (record,) = read(_json(tmp_path, dict(GOOD, keypoints=[10.0, 10.5, 2.0, 20, 30, 1], num_keypoints=1.0)))
    first = record.instances[0]
    np.testing.assert_array_equal(first.keypoints, [[10.0, 10.5], [20.0, 30.0]])
    np.testing.assert_array_equal(first.extra["coco_visibility"], [2, 1])
    assert [i.extra["annotation_id"] for i in record.instances] == [7, 8]


def test_an_unlabelled_point_may_be_anywhere_but_must_be_a_number(tmp_path):
    (record,) = read(_json(tmp_path, dict(GOOD, keypoints=[10, 10, 2, -500, 9000, 0], num_keypoints=1)))
    assert record.instances[0].visible.tolist() == [True, False]


def test_wholebody_parts_are_checked_by_their_own_field_names(tmp_path):
    face = [0, 0, 0] * 68
    face[4] = NAN
    annotation = dict(GOOD, keypoints=[10, 10, 2] * 17, num_keypoints=17, face_kpts=face)
    with pytest.raises(InvalidAnnotationError, match=r"annotation id 7: field 'face_kpts': point 1's y is nan"):
        read(_json(tmp_path, annotation, wholebody=True), wholebody=True)
    # num_keypoints counts the body's 17 points, whatever the hands and face hold
    hands = dict(GOOD, keypoints=[10, 10, 2] * 17, num_keypoints=17, lefthand_kpts=[10, 10, 2] * 21)
    records = read(_json(tmp_path, hands, wholebody=True), wholebody=True)
    assert records.num_instances == 2


def test_wholebody_part_confidences_from_0_to_2_stand_in_for_flags_but_not_beyond(tmp_path):
    """COCO-WholeBody's own json holds confidences (0.04 to 0.37) in its hand fields: read, as
    not labelled below 1; a value beyond 2 is refused by the field's name."""
    hands = [12, 12, 0.07] * 21
    annotation = dict(GOOD, keypoints=[10, 10, 2] * 17, num_keypoints=17, righthand_kpts=hands)
    (record,) = read(_json(tmp_path, annotation, wholebody=True), wholebody=True)
    assert not record.instances[0].visible[-21:].any() and record.instances[0].visible[:17].all()
    hands[2] = 2.5
    annotation = dict(annotation, righthand_kpts=hands)
    with pytest.raises(InvalidAnnotationError, match=r"field 'righthand_kpts': visibility flag\(s\) \[2\.5\]"):
        read(_json(tmp_path, annotation, wholebody=True), wholebody=True)
