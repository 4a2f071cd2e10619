"""Mosaics of real single-person records (heatmapnet.data.mosaic): deterministic crowds whose
annotations land on the pixels, with a 4x height spread, and train/val sources kept apart.

The geometry tests use small hand-made source sets written to tmp_path (black PNGs with Gaussian
blobs at the keypoints), so they run without the real data; the LSPET tests skip without it."""
import cv2
import numpy as np
import pytest
import scipy.io
from omegaconf import OmegaConf

from heatmapnet.build import build_codec, build_run_data, build_scheme, read_run_records
from heatmapnet.config import SplitSection, load_config
from heatmapnet.data.build import read_split
from heatmapnet.data.mosaic import MosaicPeople, Placement
from heatmapnet.data.readers import read
from heatmapnet.data.records import Instance, Record

# -- hand-made sources --------------------------------------------------------------------------
SOURCE_W, SOURCE_H = 120, 200
BOX = (20.0, 20.0, 80.0, 160.0)  # x, y, w, h: every blob lies >= 24 px (4 sigma) inside it
SIGMA = 6.0
GARBAGE = (-40.0, -40.0)  # an invisible joint's meaningless coordinates, as in LSPET


def blob_image(points, channels, width=SOURCE_W, height=SOURCE_H):
    """Black image, a Gaussian blob (peak 250, sigma 6) centred exactly on each point, one colour
    channel per point."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.zeros((height, width, 3))
    for (x, y), channel in zip(points, channels):
        image[..., channel] += 250.0 * np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * SIGMA ** 2))
    return np.round(image).astype(np.uint8)


def write_png(path, image):
    assert cv2.imwrite(str(path), image)
    return str(path)


@pytest.fixture
def blob_sources(tmp_path):
    """8 people, 5 joints each: 0-2 visible blobs (blue, green, red), 3 invisible with garbage
    coordinates, 4 invisible at a place inside the box."""
    rng = np.random.default_rng(11)
    records = []
    for i in range(8):
        visible_points = np.stack([rng.uniform(44, 76, 3), rng.uniform(44, 156, 3)], axis=1)
        path = write_png(tmp_path / f"blob{i}.png", blob_image(visible_points, (0, 1, 2)))
        keypoints = np.concatenate([visible_points, [GARBAGE, (60.0, 100.0)]])
        instance = Instance(keypoints, [True, True, True, False, False], BOX)
        records.append(Record(path, SOURCE_W, SOURCE_H, [instance]))
    return records


def blob_mosaics(sources, num_samples=30, seed=0, plain=True, **options):
    settings = dict(people=(2, 4), canvas=(320, 320), heights=(0.125, 0.625), max_overlap=0.0,
                    max_outside=0.0, min_visible=3, plain=plain)
    settings.update(options)
    return MosaicPeople(sources, num_samples, seed=seed, **settings)


def crop_of(box, margin=0.2):
    """The pixels a pasted person can change: its box grown by ``margin`` of its longer side."""
    x, y, w, h = box
    grow = margin * max(w, h)
    return np.array([x - grow, y - grow, x + w + grow, y + h + grow])


def by_hand(instance, source_keypoints, source_box=BOX):
    """The source keypoints moved by the zoom and shift that take the source box onto the
    instance's (unclipped) box."""
    zoom = instance.bbox[3] / source_box[3]
    shift = instance.bbox[:2] - zoom * np.asarray(source_box[:2])
    return zoom, zoom * np.asarray(source_keypoints) + shift


# -- determinism and the sequence ---------------------------------------------------------------
def test_a_mosaic_depends_only_on_seed_and_index(blob_sources):
    first, again = blob_mosaics(blob_sources, 10, seed=3, plain=False), blob_mosaics(blob_sources, 50, seed=3,
                                                                                   plain=False)
    a, b = first[4], again[4]
    np.testing.assert_array_equal(a.image, b.image)
    assert len(a.instances) == len(b.instances)
    for one, other in zip(a.instances, b.instances):
        np.testing.assert_array_equal(one.keypoints, other.keypoints)
        np.testing.assert_array_equal(one.visible, other.visible)
        np.testing.assert_array_equal(one.bbox, other.bbox)
    assert not np.array_equal(first[5].image, a.image)
    assert not np.array_equal(blob_mosaics(blob_sources, 10, seed=4, plain=False)[4].image, a.image)
    assert a.image_path == "mosaic://mosaic/seed3/000004" and a.image_id == 4
    assert a.image.shape == (320, 320, 3) and a.image.dtype == np.uint8 and (a.width, a.height) == (320, 320)


def test_mosaics_behave_as_sequences_and_count_their_people_without_drawing(blob_sources):
    mosaics = blob_mosaics(blob_sources, 6)
    assert len(mosaics) == 6 and len(mosaics[1:4]) == 3
    assert mosaics[-1].image_path == mosaics[5].image_path != mosaics[4].image_path
    with pytest.raises(IndexError, match="sample 6 of a 6-sample mosaic set"):
        mosaics[6]
    counts = mosaics.instance_counts()
    np.testing.assert_array_equal(counts, [len(mosaics[i].instances) for i in range(6)])
    assert set(counts) <= {2, 3, 4}


def test_the_annotations_view_gives_each_mosaics_annotations_without_reading_an_image(blob_sources, monkeypatch,
                                                                                      same_annotations):
    mosaics = blob_mosaics(blob_sources, 8, plain=False)
    drawn = [mosaics[i] for i in range(len(mosaics))]
    from heatmapnet.data import pipelines

    def no_reading(record):
        raise AssertionError(f"{record.image_path} read for annotations")

    monkeypatch.setattr(pipelines, "load_image", no_reading)
    view = mosaics.annotations
    assert len(view) == 8 and view[-1].image_path == drawn[7].image_path
    for index, record in enumerate(drawn):
        same_annotations(record, view[index])
    with pytest.raises(AssertionError, match="read for annotations"):
        mosaics[0]  # drawing does read the sources


def test_settings_that_cannot_work_are_refused(blob_sources):
    with pytest.raises(ValueError, match="2 <= fewest"):
        blob_mosaics(blob_sources, people=(1, 3))
    with pytest.raises(ValueError, match="at least min_ratio"):
        blob_mosaics(blob_sources, heights=(0.2, 0.7))  # 3.5x < 4x
    with pytest.raises(ValueError, match="at least 2 source people"):
        blob_mosaics(blob_sources[:1])
    with pytest.raises(ValueError, match="at least 2 source people"):
        blob_mosaics(blob_sources, min_visible=4)  # every source has 3 visible joints
    five = blob_sources[0].instances[0]
    two = Record(blob_sources[1].image_path, SOURCE_W, SOURCE_H, [five, five])
    with pytest.raises(ValueError, match="one person each.*blob1.png has 2"):
        blob_mosaics(blob_sources[:1] + [two])
    three = Record(blob_sources[1].image_path, SOURCE_W, SOURCE_H,
                   [Instance(five.keypoints[:3], five.visible[:3], BOX)])
    with pytest.raises(ValueError, match=r"mix keypoint counts \[3, 5\]"):
        blob_mosaics(blob_sources + [three])


# -- heights ------------------------------------------------------------------------------------
def test_the_tallest_person_is_at_least_four_times_the_shortest_in_every_mosaic(blob_sources):
    mosaics = blob_mosaics(blob_sources, 60)
    counts = []
    for record in mosaics:
        heights = np.array([i.bbox[3] for i in record.instances])  # boxes inside: max_outside=0
        assert heights.max() / heights.min() >= 4.0
        assert heights.min() >= 40.0 * (1 - 1e-6) and heights.max() <= 200.0  # heights (0.125, 0.625) x 320
        counts.append(len(heights))
        # drawn smallest first, and the same person is never placed twice
        assert list(heights) == sorted(heights)
        sources = [i.extra["source_index"] for i in record.instances]
        assert len(set(sources)) == len(sources)
    assert set(counts) == {2, 3, 4}


# -- annotations on the pixels ------------------------------------------------------------------
def test_keypoints_follow_the_pixels_and_the_box_exactly(blob_sources):
    """Each visible joint is the centroid of its blob in the mosaic (within 0.05 px), and equals
    the source point moved by the zoom and shift that take the source box onto the instance box."""
    mosaics = blob_mosaics(blob_sources, 30)
    checked = 0
    for record in mosaics:
        crops = [crop_of(i.bbox) for i in record.instances]
        image = record.image.astype(np.float64)
        for n, instance in enumerate(record.instances):
            source = blob_sources[instance.extra["source_index"]].instances[0]
            zoom, expected = by_hand(instance, source.keypoints)
            np.testing.assert_allclose(instance.keypoints, expected, rtol=0, atol=1e-9)
            assert (instance.bbox[:2] >= -0.5).all() and (instance.bbox[:2] + instance.bbox[2:] <= 319.5).all()
            blur = (1 / zoom - 1) / 2 if zoom < 1 else 0.0  # the anti-alias pre-blur widens the blob
            radius = int(np.ceil(4 * zoom * np.hypot(SIGMA, blur))) + 2
            for joint in range(3):
                x, y = instance.keypoints[joint]
                window = np.array([x - radius, y - radius, x + radius, y + radius])
                others = [c for m, c in enumerate(crops) if m != n]
                if any((window[:2] < c[2:]).all() and (c[:2] < window[2:]).all() for c in others):
                    continue  # another person's crop may cover part of this blob
                c0, r0 = max(0, int(np.floor(window[0]))), max(0, int(np.floor(window[1])))
                c1, r1 = min(320, int(np.ceil(window[2])) + 1), min(320, int(np.ceil(window[3])) + 1)
                patch = image[r0:r1, c0:c1, joint]
                rows, cols = np.mgrid[r0:r1, c0:c1]
                centroid = np.array([(patch * cols).sum(), (patch * rows).sum()]) / patch.sum()
                np.testing.assert_allclose(centroid, (x, y), rtol=0, atol=0.05)
                checked += 1
    assert checked >= 100


def test_invisible_joints_stay_invisible(blob_sources):
    for record in blob_mosaics(blob_sources, 30):
        for instance in record.instances:
            np.testing.assert_array_equal(instance.visible, [True, True, True, False, False])


def test_a_joint_beyond_the_canvas_becomes_invisible(tmp_path):
    """A joint 30 px below a 40 px box: it leaves the 160 px canvas when the person is tall or low."""
    path = write_png(tmp_path / "black.png", np.zeros((200, 120, 3), np.uint8))
    box = (40.0, 20.0, 40.0, 40.0)
    keypoints = np.array([[45.0, 25.0], [75.0, 25.0], [60.0, 55.0], [60.0, 90.0]])
    sources = [Record(path, 120, 200, [Instance(keypoints + [0.0, 0.01 * i], np.ones(4, bool), box)])
               for i in range(6)]
    # margin 0: no crop carries scenery past its box, so only the canvas edge takes joints away
    mosaics = MosaicPeople(sources, 40, people=(2, 3), canvas=(160, 160), heights=(0.25, 1.0), max_overlap=1.0,
                           max_outside=0.0, max_zoom=4.0, min_visible=3, margin=0.0, plain=True)
    outcomes = set()
    for record in mosaics:
        for instance in record.instances:
            source = sources[instance.extra["source_index"]].instances[0]
            _, expected = by_hand(instance, source.keypoints, box)
            np.testing.assert_allclose(instance.keypoints, expected, rtol=0, atol=1e-9)
            assert instance.visible[:3].all()  # inside the box, which lies inside the canvas
            leaves = expected[3, 1] >= 159.5
            assert instance.visible[3] == (not leaves)
            outcomes.add(bool(leaves))
    assert outcomes == {True, False}


def test_people_cut_by_the_canvas_edge_lose_the_joints_outside_and_their_boxes_are_clipped(tmp_path):
    """Joints on the box corners and centre; up to 40% of a box may lie past the edge."""
    path = write_png(tmp_path / "black.png", np.zeros((200, 120, 3), np.uint8))
    box = (30.0, 30.0, 60.0, 120.0)
    corners = np.array([[30.0, 30.0], [90.0, 30.0], [30.0, 150.0], [90.0, 150.0], [60.0, 90.0]])
    sources = [Record(path, 120, 200, [Instance(corners, np.ones(5, bool), box)]) for _ in range(5)]
    mosaics = MosaicPeople(sources, 40, people=(2, 2), canvas=(200, 200), heights=(0.2, 0.8), max_overlap=1.0,
                           max_outside=0.4, min_visible=4, margin=0.0, plain=True)  # no scenery hides a joint
    cut = 0
    for record in mosaics:
        for instance in record.instances:
            x, y = instance.keypoints[:, 0], instance.keypoints[:, 1]
            on_canvas = (x >= -0.5) & (x < 199.5) & (y >= -0.5) & (y < 199.5)
            np.testing.assert_array_equal(instance.visible, on_canvas)
            assert on_canvas.any()
            # the moved box spans the moved corners; the annotated box is its part on the canvas
            low = np.maximum(instance.keypoints[0], -0.5)
            high = np.minimum(instance.keypoints[3], 199.5)
            np.testing.assert_allclose(instance.bbox, [*low, *(high - low)], rtol=0, atol=1e-9)
            np.testing.assert_allclose(instance.extra["height"], instance.keypoints[3, 1] - instance.keypoints[0, 1],
                                       rtol=1e-12)
            cut += int(not on_canvas.all())
    assert cut >= 5


# -- people under a nearer person's crop -----------------------------------------------------------
def _inside(point, corners) -> bool:
    return bool(corners[0] <= point[0] <= corners[2] and corners[1] <= point[1] <= corners[3])


def _box_corners(box):
    x, y, w, h = box
    return np.array([x, y, x + w, y + h])


def _moved_box(instance, sources):
    """The instance's unclipped box: its source box moved by its zoom and offset."""
    box = np.asarray(sources[instance.extra["source_index"]].instances[0].bbox, dtype=np.float64)
    zoom = instance.extra["zoom"]
    return np.concatenate([zoom * box[:2] + np.asarray(instance.extra["offset"]), zoom * box[2:]])


def test_a_joint_under_a_nearer_persons_scenery_is_invisible_by_hand(tmp_path):
    """A tall person (source box (60, 70, 80, 160) in a 200 x 300 photograph, zoom 1, shift (100, 0):
    box x 160..240, y 70..230) is pasted over a short one whose joints lie at y = 150 and x = 150,
    135, 133, 165. The tall crop's margin is 0.2 x 160 = 32 px: opaque to 0.6 x 32 = 19.2 px past
    the box (x >= 140.8), fading over 12.8 px. Opacity: x = 150: 1; x = 135: 1 - 5.8 / 12.8 =
    0.546875; x = 133: 1 - 7.8 / 12.8 = 0.390625; x = 165: 1, but inside the tall box (occluded by
    that person, kept as in COCO). So the first two are hidden (>= 0.5), the others visible."""
    black = write_png(tmp_path / "black.png", np.zeros((300, 200, 3), np.uint8))
    joints = np.array([[150.0, 150.0], [135.0, 150.0], [133.0, 150.0], [165.0, 150.0]])
    tall = Instance(np.array([[70.0, 80.0], [130.0, 80.0], [70.0, 220.0], [130.0, 220.0]]), np.ones(4, bool),
                    (60.0, 70.0, 80.0, 160.0))
    short = Instance(joints, np.ones(4, bool), (130.0, 140.0, 40.0, 20.0))
    sources = [Record(black, 200, 300, [tall]), Record(black, 200, 300, [short])]
    mosaics = MosaicPeople(sources, 1, people=(2, 2), canvas=(320, 320), heights=(0.05, 0.9), max_zoom=4.0,
                           min_visible=4, plain=True)
    layout = [Placement(1, 1.0, (0.0, 0.0)), Placement(0, 1.0, (100.0, 0.0))]  # short first: drawn behind
    np.testing.assert_allclose(mosaics.opacity(layout[1], joints), [1.0, 0.546875, 0.390625, 1.0], rtol=0,
                               atol=1e-12)
    mosaics.layout = lambda index: layout
    record = mosaics[0]
    assert [i.extra["source_index"] for i in record.instances] == [1, 0]
    np.testing.assert_array_equal(record.instances[0].visible, [False, False, True, True])
    np.testing.assert_array_equal(record.instances[1].visible, [True, True, True, True])


def test_every_visible_joint_outside_nearer_boxes_shows_in_the_image(blob_sources):
    """Blobs on black: wherever a nearer person's crop covers a joint (outside its box), the image
    shows that crop's black scenery instead of the joint's blob; a joint annotated visible there
    would be a label of nothing. Each visible joint outside every taller person's box must show its
    blob at no less than 0.3 of the blob's peak (250), and overlaps must have hidden some joints."""
    mosaics = blob_mosaics(blob_sources, 40, max_overlap=1.0)
    checked = hidden = 0
    for record in mosaics:
        for instance in record.instances:
            taller = [i for i in record.instances if i.extra["height"] > instance.extra["height"]]
            for joint in np.flatnonzero(instance.visible):
                point = instance.keypoints[joint]
                if any(_inside(point, _box_corners(_moved_box(t, blob_sources))) for t in taller):
                    continue  # occluded by that person: kept, as in COCO
                x, y = np.floor(point + 0.5).astype(int)
                assert record.image[y, x, joint] >= 0.3 * 250, (record.image_path, joint)
                checked += 1
            hidden += int((~instance.visible[:3]).sum())  # joints 0-2 are visible in every source
    assert checked >= 150 and hidden >= 5


def test_no_person_is_hidden_beyond_max_overlap_by_a_taller_ones_crop(blob_sources):
    """The part of a person's box inside a taller person's box grown by 0.8 of its margin (where its
    crop is at least half opaque: 0.6 opaque + half the 0.4 fade) is at most max_overlap."""
    for record in blob_mosaics(blob_sources, 40, max_overlap=0.3):
        for instance in record.instances:
            box = _moved_box(instance, blob_sources)
            for other in record.instances:
                if other.extra["height"] <= instance.extra["height"]:
                    continue
                region = crop_of(_moved_box(other, blob_sources), 0.8 * 0.2)
                low, high = np.maximum(box[:2], region[:2]), np.minimum(box[:2] + box[2:], region[2:])
                assert np.prod(np.clip(high - low, 0, None)) <= 0.3 * box[2] * box[3] + 1e-9


# -- the config path ----------------------------------------------------------------------------
@pytest.fixture
def lspet_like(tmp_path):
    """A 12-image joints.mat in the LSPET layout (14 x 3 x N) beside its images."""
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(5)
    joints = np.zeros((14, 3, 12))
    for i in range(12):
        cv2.imwrite(str(images / f"im{i + 1:05d}.jpg"), np.full((160, 100, 3), 20 * i, np.uint8))
        joints[:, 0, i] = rng.uniform(25, 75, 14)
        joints[:, 1, i] = rng.uniform(20, 140, 14)
        joints[:, 2, i] = 1
    joints[[0, 1], 1, :] = [[20.0], [140.0]]  # every person is 120 px tall
    scipy.io.savemat(str(tmp_path / "joints.mat"), {"joints": joints})
    return tmp_path / "joints.mat"


def test_a_mosaic_split_is_made_of_its_subset_of_the_files_people(lspet_like):
    split = SplitSection(source="mosaic", format="lsp", ann_file=str(lspet_like), subset="0:8", num_samples=5,
                         seed=3, people=[2, 3], canvas=[200, 200])
    mosaics = read_split(split)
    assert isinstance(mosaics, MosaicPeople) and len(mosaics) == 5
    assert [r.image_path for r in mosaics.sources] == [r.image_path for r in read(lspet_like)[:8]]
    assert mosaics[0].image_path.startswith(f"mosaic://{lspet_like.parent.name}[0:8]/seed3/")
    held_out = read_split(SplitSection(source="mosaic", format="lsp", ann_file=str(lspet_like), subset="8:",
                                       num_samples=5, seed=3, people=[2, 3], canvas=[200, 200]))
    assert [r.image_path.rsplit("/", 1)[1] for r in held_out.sources] == \
        ["im00009.jpg", "im00010.jpg", "im00011.jpg", "im00012.jpg"]
    for record in mosaics:
        assert 2 <= len(record.instances) <= 3 and record.image.shape == (200, 200, 3)
        assert all(i.extra["source_index"] < 8 and i.keypoints.shape == (14, 2) for i in record.instances)
    with pytest.raises(ValueError, match="data.train.num_samples must be > 0 for source mosaic"):
        read_split(SplitSection(source="mosaic", format="lsp", ann_file=str(lspet_like)))
    with pytest.raises(ValueError, match="data.train.ann_file is not set"):
        read_split(SplitSection(source="mosaic", num_samples=3))


def test_the_lsp_mosaic_config_reads_people_and_canvas_and_overrides_reach_them(lspet_like):
    config = load_config("lsp_mosaic", [f"data.train.ann_file={lspet_like}", f"data.val.ann_file={lspet_like}",
                                        "data.train.subset=0:6",
                                        "data.train.num_samples=4", "data.train.people=[3,3]",
                                        "data.train.canvas=[240,200]"])
    assert OmegaConf.to_container(config.data.val.people) == [2, 4]
    mosaics = read_split(config.data.train)
    assert len(mosaics) == 4 and len(mosaics.sources) == 6
    record = mosaics[2]
    assert (record.width, record.height) == (240, 200) and record.image.shape == (200, 240, 3)
    assert len(record.instances) == 3


# -- LSPET --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lspet(shared_data):
    return read(shared_data / "lsp_extended" / "joints.mat")


def test_lspet_mosaics_are_deterministic_and_spread_heights_4x(lspet):
    mosaics = MosaicPeople(lspet[:2500], 40, seed=7, max_outside=0.0)
    again = MosaicPeople(lspet[:2500], 40, seed=7, max_outside=0.0)
    np.testing.assert_array_equal(mosaics[3].image, again[3].image)
    assert not np.array_equal(mosaics[3].image, mosaics[4].image)
    for record in mosaics:
        heights = np.array([i.bbox[3] for i in record.instances])
        assert heights.max() / heights.min() >= 4.0
        for instance in record.instances:
            source = lspet[instance.extra["source_index"]].instances[0]
            zoom, expected = by_hand(instance, source.keypoints, source.bbox)
            np.testing.assert_allclose(instance.keypoints[instance.visible], expected[instance.visible], rtol=0,
                                       atol=1e-9)
            # boxes inside: no joint leaves the canvas; a joint is lost only under a taller person's
            # crop (its box grown by the margin), outside that person's box
            lost = source.visible & ~instance.visible
            taller = [i for i in record.instances if i.extra["height"] > instance.extra["height"]]
            for point in instance.keypoints[lost]:
                assert any(_inside(point, crop_of(_moved_box(t, lspet))) and not _inside(point, _box_corners(
                    _moved_box(t, lspet))) for t in taller)


def test_the_lsp_mosaic_config_builds_bottom_up_datasets_over_disjoint_people(shared_data):
    config = load_config("lsp_mosaic")
    scheme = build_scheme(config)
    data = build_run_data(config, build_codec(config, scheme), read_run_records(config))
    assert len(data.train_records) == 10000 and len(data.val_records) == 200
    train_paths = {r.image_path for r in data.train_records.sources}
    val_paths = {r.image_path for r in data.val_records.sources}
    assert len(train_paths) == 2500 and len(val_paths) == 500 and not train_paths & val_paths
    assert str(shared_data / "lsp_extended" / "images" / "im02500.jpg") in train_paths
    assert str(shared_data / "lsp_extended" / "images" / "im02501.jpg") in val_paths
    for records, paths in ((data.train_records, train_paths), (data.val_records, val_paths)):
        for record in records[:15]:
            assert all(i.extra["source_path"] in paths for i in record.instances)
            heights = [i.extra["height"] for i in record.instances]
            assert max(heights) / min(heights) >= 4.0
    for dataset in (data.train_set, data.val_set):
        sample = dataset[0]
        assert tuple(sample["image"].shape) == (3, 256, 256)  # the 384 x 384 mosaics resized to data.input_size
        assert tuple(sample["heatmaps"].shape) == (15, 64, 64)  # centre + 14 joints at stride 4
        assert 2 <= int(sample["num_instances"]) <= 4
        assert float(sample["heatmaps"][0].max()) == 1.0  # a centre peak
