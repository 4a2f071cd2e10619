"""The codec: one coordinate convention in both directions, so a round trip returns the point."""
import numpy as np
import pytest
import torch

from heatmapnet.codec import HeatmapCodec
from heatmapnet.targets import FixedSigma, RadiusSigma


def test_stride_mapping_puts_heatmap_pixel_centres_on_input_block_centres():
    codec = HeatmapCodec((64, 32), stride=4)
    assert codec.heatmap_size == (8, 16)
    # heatmap pixel 0 averages input pixels 0..3, centred at 1.5; pixel 1 -> 5.5
    assert codec.input_to_heatmap(torch.tensor([1.5, 5.5])).tolist() == [0.0, 1.0]
    assert codec.heatmap_to_input(torch.tensor([0.0, 1.0])).tolist() == [1.5, 5.5]


def test_input_size_must_be_divisible_by_the_stride():
    with pytest.raises(ValueError, match="divisible"):
        HeatmapCodec((65, 64), stride=4)


# A noise-free Gaussian decodes (DARK) to within float32 rounding of the point: measured 3.7e-6 to
# 4.9e-6 px at worst over 17 points for seeds 0-4, either peak convention; the tolerance is 10x that.
ROUND_TRIP_PX = 5e-5


@pytest.mark.parametrize("exact_peak", [False, True])
def test_encode_then_decode_returns_the_keypoints_in_input_pixels(exact_peak):
    codec = HeatmapCodec((128, 128), stride=4, sigma_policy=FixedSigma(2.0), exact_peak=exact_peak)
    rng = np.random.default_rng(0)
    keypoints = rng.uniform(16, 112, size=(1, 17, 2))
    encoded = codec.encode(keypoints, np.ones((1, 17), bool))
    decoded = codec.decode(encoded.heatmaps[None])
    errors = np.linalg.norm(decoded.coordinates[0].numpy() - keypoints[0], axis=-1)
    assert errors.max() < ROUND_TRIP_PX
    # the score is the peak pixel's value: 1 where the Gaussian is centred on the point's own value
    # (exact_peak); else the Gaussian (sigma 2 heatmap px) read at most half a pixel off in x and y,
    # at least exp(-(0.5^2 + 0.5^2) / (2 * 2^2))
    scores = decoded.scores[0].numpy()
    if exact_peak:
        np.testing.assert_allclose(scores, 1.0, rtol=0, atol=1e-6)
    else:
        offsets = codec.input_to_heatmap(torch.from_numpy(keypoints[0])).numpy()
        offsets -= np.floor(offsets + 0.5)  # from the nearest heatmap pixel
        expected = np.exp(-(offsets ** 2).sum(-1) / (2 * 2.0 ** 2))
        np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-6)
        assert scores.min() >= np.exp(-0.5 / 8.0) - 1e-6


def test_invisible_and_off_map_keypoints_get_zero_weight_and_draw_nothing():
    codec = HeatmapCodec((32, 32), stride=4)
    keypoints = np.array([[[10.0, 10.0], [-50.0, 7.0], [np.nan, np.nan], [33.0, 5.0]]])
    visible = np.array([[True, True, False, True]])
    encoded = codec.encode(keypoints, visible)
    assert encoded.keypoint_weights.tolist() == [[1.0, 0.0, 0.0, 0.0]]
    assert encoded.heatmaps[1:].sum() == 0 and encoded.heatmaps[0].max() == 1.0


def test_a_visible_nan_keypoint_is_a_clear_error():
    codec = HeatmapCodec((32, 32), stride=4)
    with pytest.raises(ValueError, match="NaN"):
        codec.encode(np.array([[[np.nan, 3.0]]]), np.array([[True]]))


def test_size_adaptive_sigma_widens_the_gaussians_of_larger_instances():
    codec = HeatmapCodec((256, 256), stride=4, sigma_policy=RadiusSigma())
    keypoints = np.array([[[40.0, 40.0]], [[180.0, 180.0]]])
    boxes = np.array([[20.0, 20.0, 40.0, 40.0], [100.0, 100.0, 160.0, 160.0]])
    encoded = codec.encode(keypoints, np.ones((2, 1), bool), boxes)
    # heatmap boxes 10 and 40 px: sigma = max(0.75, (2 * 0.8167 + 1) / 6) = 0.75 and (2 * 3.2668 + 1) / 6
    assert encoded.sigmas[:, 0].tolist() == pytest.approx([0.75, 1.255600], abs=1e-5)
    spread = (encoded.heatmaps[0] > 0.5).float()
    assert spread[:32, :32].sum() < spread[32:, 32:].sum()


def test_decode_instances_returns_every_instance_in_input_pixels():
    codec = HeatmapCodec((128, 128), stride=4, sigma_policy=FixedSigma(1.5), exact_peak=True)
    keypoints = np.array([[[20.0, 30.0]], [[90.3, 70.9]]])
    encoded = codec.encode(keypoints, np.ones((2, 1), bool))
    peaks = codec.decode_instances(encoded.heatmaps[None], k=2)
    found = peaks.points[0].numpy()
    order = np.argsort(found[:, 0])
    np.testing.assert_allclose(found[order], keypoints[:, 0], rtol=0, atol=ROUND_TRIP_PX)  # measured 3.1e-6
    assert peaks.classes[0].tolist() == [0, 0]
