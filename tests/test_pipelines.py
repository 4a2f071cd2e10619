"""Affine pipelines: points follow the pixels, inverses return the original, flips swap pairs."""
import cv2
import numpy as np
import pytest
import torch

from heatmapnet.codec import HeatmapCodec
from heatmapnet.data.pipelines import MultiInstanceDataset, TopDownDataset, collate_samples, load_image
from heatmapnet.data.records import Instance, Record
from heatmapnet.data.transforms import (AffineParams, Augmentation, box_to_center_size, crop_matrix, invert_matrix,
                                        letterbox_matrix, transform_points, warp_image)
from heatmapnet.targets import RadiusSigma


def _blob_image(points, size=(200, 160), sigma=2.5):
    """A dark float image with a bright Gaussian blob centred (sub-pixel) on each point."""
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.zeros((height, width), np.float32)
    for x, y in points:
        image = np.maximum(image, np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma ** 2)))
    return image


def _blob_centroid(image, point, radius=6):
    x0, y0 = int(round(point[0])), int(round(point[1]))
    patch = image[y0 - radius:y0 + radius + 1, x0 - radius:x0 + radius + 1].astype(np.float64)
    patch = np.where(patch > 0.2 * patch.max(), patch, 0.0)
    ys, xs = np.mgrid[y0 - radius:y0 + radius + 1, x0 - radius:x0 + radius + 1]
    return np.array([(xs * patch).sum(), (ys * patch).sum()]) / patch.sum()


@pytest.mark.parametrize("params", [AffineParams(), AffineParams(1.2, 25.0, (0.05, -0.08), False),
                                    AffineParams(0.8, -40.0, (0.0, 0.1), True)])
def test_transformed_keypoints_land_on_the_transformed_image(params):
    points = np.array([[60.3, 50.7], [120.8, 90.2], [90.5, 110.4], [75.1, 70.9]])
    image = _blob_image(points)
    center, size = box_to_center_size([50, 40, 80, 80], 1.0)
    matrix = crop_matrix(center, size, (128, 128), params)
    warped = warp_image(image, matrix, (128, 128))
    moved = transform_points(points, matrix)
    inside = moved[(moved.min(axis=1) > 8) & (moved.max(axis=1) < 120)]
    assert len(inside) >= 3
    for point in inside:
        assert np.linalg.norm(_blob_centroid(warped, point) - point) < 0.15


def test_letterboxed_points_land_on_the_letterboxed_image():
    points = np.array([[30.2, 40.6], [170.5, 120.3]])
    image = _blob_image(points, sigma=4.0)
    matrix = letterbox_matrix((200, 160), (128, 128))
    warped = warp_image(image, matrix, (128, 128))
    for point in transform_points(points, matrix):
        assert np.linalg.norm(_blob_centroid(warped, point, radius=5) - point) < 0.15
    # the image's outer edges (-0.5 and 199.5) map onto the output's edges horizontally
    assert transform_points(np.array([[-0.5, 79.5], [199.5, 79.5]]), matrix)[:, 0].tolist() == \
        pytest.approx([-0.5, 127.5])


def test_the_inverse_affine_returns_the_original_coordinates():
    rng = np.random.default_rng(0)
    for _ in range(50):
        params = AffineParams.sample(rng, Augmentation(rotation_probability=1.0))
        matrix = crop_matrix(rng.uniform(0, 300, 2), rng.uniform(20, 200, 2), (192, 256), params)
        points = rng.uniform(-50, 400, size=(17, 2))
        back = transform_points(transform_points(points, matrix), invert_matrix(matrix))
        assert np.abs(back - points).max() < 1e-9


def test_mirroring_twice_is_the_identity():
    center, size = np.array([100.0, 80.0]), np.array([120.0, 120.0])
    plain = crop_matrix(center, size, (64, 64))
    mirrored = crop_matrix(center, size, (64, 64), AffineParams(flip=True))
    points = np.array([[70.0, 60.0], [130.0, 95.5]])
    once = transform_points(points, mirrored)
    assert once[:, 0] == pytest.approx(63.0 - transform_points(points, plain)[:, 0])
    mirror_in_output = np.array([[-1.0, 0.0, 63.0], [0.0, 1.0, 0.0]])
    assert transform_points(transform_points(once, mirror_in_output), invert_matrix(plain)) == \
        pytest.approx(points)


def _record(image, keypoints, visible, boxes):
    instances = [Instance(k, v, b) for k, v, b in zip(keypoints, visible, boxes)]
    return Record("synthetic://test/0", image.shape[1], image.shape[0], instances, image=image)


def test_top_down_sample_targets_decode_to_its_keypoints_and_back_to_the_original():
    keypoints = np.array([[[60.3, 50.7], [120.8, 90.2], [90.5, 110.4]]])
    image = (255 * _blob_image(keypoints[0])[:, :, None].repeat(3, axis=2)).astype(np.uint8)
    record = _record(image, keypoints, np.ones((1, 3), bool), [[55, 45, 70, 70]])
    codec = HeatmapCodec((128, 128), stride=4, exact_peak=False)
    mild = Augmentation(scale=0.1, rotation=15.0, rotation_probability=1.0, translation=0.05)
    dataset = TopDownDataset([record], codec, flip_permutation=[0, 1, 2], augmentation=mild, seed=3)
    sample = dataset[0]
    assert sample["keypoint_weights"].tolist() == [1.0, 1.0, 1.0]
    assert sample["image"].shape == (3, 128, 128) and sample["heatmaps"].shape == (3, 32, 32)
    decoded = codec.decode(sample["heatmaps"][None]).coordinates[0].numpy()
    assert np.abs(decoded - sample["keypoints"].numpy()).max() < 0.1
    original = transform_points(decoded, invert_matrix(sample["matrix"].numpy()))
    assert np.abs(original - keypoints[0]).max() < 0.2


def test_a_flipped_sample_swaps_left_and_right_keypoints():
    keypoints = np.array([[[40.0, 50.0], [80.0, 50.0], [60.0, 70.0]]])  # left, right, centre
    image = np.zeros((120, 120, 3), np.uint8)
    record = _record(image, keypoints, np.ones((1, 3), bool), [[30, 30, 60, 60]])
    codec = HeatmapCodec((64, 64), stride=4)
    always_flip = Augmentation(0, 0, 0, 0, 1.0, 0, 0, 0)
    flipped = TopDownDataset([record], codec, [1, 0, 2], always_flip)[0]["keypoints"].numpy()
    plain = TopDownDataset([record], codec, [1, 0, 2])[0]["keypoints"].numpy()
    # the new 'left' point sits where the mirror image of the old 'right' one is drawn
    assert flipped[0] == pytest.approx([63.0 - plain[1, 0], plain[1, 1]])
    assert flipped[1] == pytest.approx([63.0 - plain[0, 0], plain[0, 1]])
    assert flipped[0, 0] < flipped[1, 0]  # left stays on the image's left after the swap


def test_multi_instance_sample_sizes_each_instance_by_its_own_box_and_batches_pad():
    image = np.zeros((200, 200, 3), np.uint8)
    small = _record(image, np.array([[[30.0, 30.0]]]), np.ones((1, 1), bool), [[20, 20, 10, 10]])
    two = _record(image, np.array([[[30.0, 30.0]], [[120.0, 120.0]]]), np.ones((2, 1), bool),
                  [[20, 20, 10, 10], [60, 60, 120, 120]])
    # overlap 0.3: r = 0.226 x box side, so the 120 px person (19.2 heatmap px) gets sigma 1.6
    codec = HeatmapCodec((128, 128), stride=4, sigma_policy=RadiusSigma(min_overlap=0.3))
    dataset = MultiInstanceDataset([small, two], codec, num_keypoints=1)
    batch = collate_samples([dataset[0], dataset[1]])
    assert batch["keypoints"].shape == (2, 2, 1, 2) and batch["num_instances"].tolist() == [1, 2]
    assert batch["visible"][0, 1].sum() == 0  # padding
    heat = batch["heatmaps"][1, 0]
    assert (heat[:10, :10] > 0.3).sum() < (heat[12:26, 12:26] > 0.3).sum()  # big person, wide blob


def test_missing_corrupt_and_resized_images_are_errors_naming_the_file(tmp_path):
    missing = Record(str(tmp_path / "nope.jpg"), 10, 10, [])
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        load_image(missing)
    corrupt = tmp_path / "bad.jpg"
    corrupt.write_bytes(b"not a jpeg at all")
    with pytest.raises(ValueError, match="bad.jpg"):
        load_image(Record(str(corrupt), 10, 10, []))
    real = tmp_path / "real.png"
    cv2.imwrite(str(real), np.zeros((12, 10, 3), np.uint8))
    assert load_image(Record(str(real), 10, 12, [])).shape == (12, 10, 3)
    with pytest.raises(ValueError, match="real.png.*width=11"):
        load_image(Record(str(real), 11, 12, []))


def test_augmentation_is_repeatable_per_epoch_and_changes_between_epochs():
    """Training asks for ``(index, epoch)`` (the step sampler's keys); a plain index is epoch 0."""
    image = np.random.default_rng(0).integers(0, 255, (100, 100, 3), dtype=np.uint8)
    record = _record(image, np.array([[[50.0, 50.0]]]), np.ones((1, 1), bool), [[30, 30, 40, 40]])
    dataset = TopDownDataset([record], HeatmapCodec((64, 64), 4), [0], Augmentation(), seed=1)
    first = dataset[(0, 0)]["image"]
    assert torch.equal(first, dataset[(0, 0)]["image"]) and torch.equal(first, dataset[0]["image"])
    assert not torch.equal(first, dataset[(0, 1)]["image"])
    assert torch.equal(dataset[(0, 1)]["image"], dataset[(0, 1)]["image"])
    other_seed = TopDownDataset([record], HeatmapCodec((64, 64), 4), [0], Augmentation(), seed=2)
    assert not torch.equal(first, other_seed[(0, 0)]["image"])


def test_heatmap_weights_leave_out_a_crops_unlabelled_and_off_crop_points_but_keep_every_multi_channel():
    # three points: one labelled inside the box, one unlabelled, one labelled far outside the crop
    keypoints = np.array([[[60.0, 60.0], [70.0, 70.0], [500.0, 60.0]]])
    image = np.zeros((120, 600, 3), np.uint8)
    record = _record(image, keypoints, np.array([[True, False, True]]), [[40, 40, 40, 40]])
    codec = HeatmapCodec((64, 64), stride=4)
    crop = TopDownDataset([record], codec)[0]
    assert crop["heatmap_weights"].tolist() == [1.0, 0.0, 0.0]
    whole = MultiInstanceDataset([record], codec, num_keypoints=3)[0]
    # a channel of a whole image mixes instances: none is masked, whatever one instance's labels say
    assert whole["heatmap_weights"].tolist() == [1.0, 1.0, 1.0]
    assert whole["keypoint_weights"].tolist() == [[1.0, 0.0, 1.0]]


def test_augmentation_is_built_from_the_config_section_and_names_an_unknown_setting():
    from pathlib import Path

    import yaml

    from heatmapnet.config import load_config
    from heatmapnet.errors import ConfigError

    # mtfl5.yaml sets flip_probability: 0.0 and nothing else: the other ranges are mmpose's defaults
    assert yaml.safe_load((Path(__file__).parent.parent / "configs" / "mtfl5.yaml").read_text())["data"]["augmentation"] == {"flip_probability": 0.0}
    built = Augmentation.from_config(load_config("mtfl5").data.augmentation)
    assert built == Augmentation(scale=0.25, rotation=30.0, rotation_probability=0.6, translation=0.1,
                                 flip_probability=0.0, brightness=0.2, contrast=0.2, saturation=0.2)
    # a source's own settings go over the section's, as ints or floats
    assert Augmentation.from_config({"rotation": 10}, {"rotation": 5, "scale": 0}).rotation == 5.0
    with pytest.raises(ConfigError) as caught:
        Augmentation.from_config({"rotation": 10}, {"rotatoin": 5}, where="data.train.sources[1].augmentation")
    assert str(caught.value) == ("data.train.sources[1].augmentation.rotatoin: not a setting of data.augmentation; "
                                 "choose from ['brightness', 'contrast', 'flip_probability', 'rotation', "
                                 "'rotation_probability', 'saturation', 'scale', 'translation']")
