"""The built-in synthetic faces and people: deterministic, well-formed, and annotated where drawn."""
import numpy as np
import pytest

from heatmapnet.data.synthetic import SyntheticFaces, SyntheticPeople
from heatmapnet.metadata import load_scheme


def test_a_sample_depends_only_on_seed_and_index():
    first, again = SyntheticFaces(20, seed=3)[7], SyntheticFaces(5000, seed=3)[7]
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.instances[0].keypoints, again.instances[0].keypoints)
    other = SyntheticFaces(20, seed=4)[7]
    assert not np.array_equal(first.instances[0].keypoints, other.instances[0].keypoints)
    people, people_again = SyntheticPeople(10, seed=1)[2], SyntheticPeople(10, seed=1)[2]
    np.testing.assert_array_equal(people.image, people_again.image)


def test_sets_behave_as_sequences_with_bounds_checked():
    faces = SyntheticFaces(3)
    assert len(faces) == 3 and len(faces[0:2]) == 2
    assert faces[-1].image_path == faces[2].image_path != faces[1].image_path
    with pytest.raises(IndexError, match="sample 3 of a 3-sample faces set"):
        faces[3]
    with pytest.raises(ValueError, match="68 or 5"):
        SyntheticFaces(3, num_keypoints=17)


def test_faces_have_68_points_in_ibug_order_inside_the_image():
    for record in SyntheticFaces(40, seed=0):
        assert record.image.shape == (record.height, record.width, 3) and record.image.dtype == np.uint8
        (face,) = record.instances
        points = face.keypoints
        assert points.shape == (68, 2) and face.visible.all()
        assert (points >= 0).all() and (points <= [record.width - 1, record.height - 1]).all()
        # in the face's own frame (undo the roll): jaw from image left to right, brows above the
        # eyes above the nose tip above the mouth above the chin
        eye_axis = points[42:48].mean(0) - points[36:42].mean(0)
        angle = np.arctan2(eye_axis[1], eye_axis[0])
        rotate = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
        upright = points @ rotate.T
        assert upright[0, 0] < upright[8, 0] < upright[16, 0]
        assert upright[17:27, 1].mean() < upright[36:48, 1].mean() < upright[30, 1] < upright[48:68, 1].mean() \
            < upright[8, 1]
        assert upright[36, 0] < upright[39, 0] < upright[42, 0] < upright[45, 0]
        np.testing.assert_allclose(face.bbox, [*points.min(0), *np.ptp(points, axis=0)])


def test_the_five_point_faces_are_the_eye_centres_nose_tip_and_mouth_corners_of_the_68():
    full, five = SyntheticFaces(4, seed=2)[1], SyntheticFaces(4, seed=2, num_keypoints=5)[1]
    np.testing.assert_array_equal(full.image, five.image)
    points68, points5 = full.instances[0].keypoints, five.instances[0].keypoints
    expected = [points68[36:42].mean(0), points68[42:48].mean(0), points68[30], points68[48], points68[54]]
    np.testing.assert_allclose(points5, expected)
    assert len(load_scheme("mtfl5").keypoint_names) == 5


def test_plain_faces_put_the_eye_centres_on_the_drawn_pupils_and_the_face_on_skin():
    for record in SyntheticFaces(20, seed=5, plain=True):
        points = record.instances[0].keypoints
        grey = record.image.astype(float).mean(2)
        for eye in (points[36:42], points[42:48]):
            x, y = np.round(eye.mean(0)).astype(int)
            assert grey[y, x] < 60, "the pupil (drawn at the eye's centre) is dark"
        upper, lower = points[51], points[57]  # outer lip midpoints: the pixel between is lip or mouth
        x, y = np.round((upper + lower) / 2).astype(int)
        assert not np.array_equal(record.image[y, x], _row_background(record.image, y))


def test_people_have_17_coco_joints_varied_sizes_and_unlabelled_joints_only_outside_or_facing_away():
    scheme = load_scheme("coco17")
    heights = []
    records = SyntheticPeople(30, seed=0)
    counts = records.instance_counts()
    for index, record in enumerate(records):
        assert len(record.instances) == counts[index] >= 1
        for person in record.instances:
            assert person.keypoints.shape == (scheme.num_keypoints, 2)
            inside = ((person.keypoints >= 0) & (person.keypoints <= [record.width - 1, record.height - 1])).all(1)
            assert not (person.visible & ~inside).any(), "a labelled joint lies outside the image"
            assert (person.visible[5:] == inside[5:]).all(), "body joints are labelled exactly when inside"
            x, y, w, h = person.bbox
            assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= record.width and y + h <= record.height
            labelled = person.keypoints[person.visible]
            assert ((labelled >= np.array([x, y]) - 1e-9) & (labelled <= np.array([x + w, y + h]) + 1e-9)).all()
            heights.append(h)
    assert max(heights) / min(heights) > 3, "people's sizes differ several-fold"


def test_plain_people_put_every_labelled_body_joint_on_the_drawn_body():
    for record in SyntheticPeople(10, seed=2, plain=True):
        for person in record.instances:
            for (x, y), labelled in zip(person.keypoints[5:], person.visible[5:]):
                if labelled:
                    column, row = int(round(x)), int(round(y))
                    assert not np.array_equal(record.image[row, column], _row_background(record.image, row)), \
                        "a joint's pixel still shows the background"


def _row_background(image, row):
    """A plain image's background is a vertical gradient: one colour per row, the row's most common."""
    colours, counts = np.unique(image[row], axis=0, return_counts=True)
    return colours[counts.argmax()]


@pytest.mark.parametrize("dataset", [SyntheticFaces(12, seed=3), SyntheticFaces(6, seed=1, num_keypoints=5),
                                     SyntheticFaces(6, seed=2, plain=True), SyntheticPeople(12, seed=1),
                                     SyntheticPeople(6, seed=5, plain=True)],
                         ids=["faces", "faces5", "faces-plain", "people", "people-plain"])
def test_the_annotations_view_gives_the_drawn_records_annotations_without_drawing(dataset, monkeypatch,
                                                                                   same_annotations):
    drawn = [dataset[i] for i in range(len(dataset))]
    # nothing may be drawn: every OpenCV call the generators make fails from here on
    from heatmapnet.data import synthetic

    class NoDrawing:
        def __getattr__(self, name):
            raise AssertionError(f"cv2.{name} called for annotations")

    monkeypatch.setattr(synthetic, "cv2", NoDrawing())
    view = dataset.annotations
    assert len(view) == len(dataset)
    for index, record in enumerate(drawn):
        same_annotations(record, view[index])
    same_annotations(drawn[-1], view[-1])
    assert [r.image_path for r in view[1:3]] == [r.image_path for r in drawn[1:3]]
    with pytest.raises(IndexError, match=f"sample {len(dataset)} of a {len(dataset)}-sample"):
        view[len(dataset)]
