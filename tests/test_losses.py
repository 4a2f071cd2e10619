"""Losses against hand-computed values; one interface ``loss(prediction, target, keypoint_weights)``
with (B, K) weights; input validation; finiteness at extreme logits; the fused focal gradient."""
import math

import pytest
import torch
import torchvision

from heatmapnet.losses import (LOSSES, AdaptiveWingLoss, DistanceAwareFocalLoss, FocalLoss, HeatmapMSELoss,
                               build_loss, distance_aware_focal_loss_elementwise, per_keypoint_weight, prior_bias)

LN2 = math.log(2.0)
# CornerNet's loss at logit 0 (p = 1/2) with alpha 2, beta 4, per element:
POS = 0.25 * LN2  # target 1:   -(1 - p)^2 log p               = ln2 / 4  = 0.173287
NEG = 0.25 * LN2  # target 0:   -p^2 log(1 - p)                = ln2 / 4  = 0.173287
HALF = LN2 / 64  # target 0.5: -(1 - 0.5)^4 p^2 log(1 - p)    = ln2 / 64 = 0.010830
# its derivative in the logit x at p = 1/2 (dp/dx = p (1 - p)):
#   target 1: d/dx[(1-p)^2 softplus(-x)] = -(1-p)^2 (2p softplus(-x) + (1-p)) = -(ln2 + 0.5) / 4 = -0.298287
#   target 0: d/dx[p^2 softplus(x)]      =  p^2 (2(1-p) softplus(x) + p)     =  (ln2 + 0.5) / 4 =  0.298287
SLOPE = 0.25 * (LN2 + 0.5)

ALL_LOSSES = [DistanceAwareFocalLoss, FocalLoss, HeatmapMSELoss, AdaptiveWingLoss]


def maps(*channels, dtype=torch.float32):
    """(1, K, 1, W) heatmaps, one row per channel."""
    return torch.tensor([[[list(c)] for c in channels]], dtype=dtype)


def broadcast_path(logits, target):
    """The same inputs with the target of batch size 1 broadcast over the batch: this shape takes
    the element-wise (non-fused) focal path."""
    return logits, target[:1]


def fused_path(logits, target):
    return logits, target.expand_as(logits).contiguous()


# ----------------------------------------------------------------------------------------------
# DistanceAwareFocalLoss
# ----------------------------------------------------------------------------------------------
def test_distance_aware_focal_loss_matches_hand_values_at_p_one_half():
    # targets 1, 0.5, 0: (ln2/4 + ln2/64 + ln2/4) / max(1, one positive) = 0.357404
    loss = DistanceAwareFocalLoss()(torch.zeros(1, 1, 1, 3), maps([1.0, 0.5, 0.0]))
    assert loss.item() == pytest.approx(0.357404, abs=1e-6)
    assert loss.item() == pytest.approx(POS + HALF + NEG, rel=1e-6)


def test_distance_aware_focal_loss_divides_by_the_number_of_positives():
    logits = torch.zeros(2, 1, 2, 2)
    target = torch.zeros(2, 1, 2, 2)
    target[0, 0, 0, 0] = 1.0
    target[1, 0, 1, 1] = 1.0
    # 2 positives and 6 negatives at ln2 / 4 each, divided by 2
    assert DistanceAwareFocalLoss()(logits, target).item() == pytest.approx((2 * POS + 6 * NEG) / 2, rel=1e-6)


def test_distance_aware_focal_loss_without_positives_divides_by_one():
    # 4 negatives at ln2 / 64 each
    loss = DistanceAwareFocalLoss()(torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5))
    assert loss.item() == pytest.approx(4 * HALF, rel=1e-6)


def test_alpha_and_beta_zero_give_plain_cross_entropy_per_positive():
    # alpha = beta = 0: every element costs -log p or -log(1 - p) = ln2 at p = 1/2; one positive
    loss = DistanceAwareFocalLoss(alpha=0.0, beta=0.0)(torch.zeros(1, 1, 1, 3), maps([1.0, 0.5, 0.0]))
    assert loss.item() == pytest.approx(3 * LN2, rel=1e-6)


def test_non_default_alpha_and_beta_take_effect():
    # logit ln 3 -> p = 3/4; alpha 1, beta 2.
    # target 1:   -(1/4) ln(3/4)               = 0.071921
    # target 0.5: -(1/2)^2 (3/4) ln(1/4)       = 0.259930
    # target 0:   -(3/4) ln(1/4)               = 1.039721; sum / 1 positive = 1.371572
    logits = torch.full((1, 1, 1, 3), math.log(3.0))
    loss = DistanceAwareFocalLoss(alpha=1.0, beta=2.0)(logits, maps([1.0, 0.5, 0.0]))
    assert loss.item() == pytest.approx(1.371572, abs=2e-6)


@pytest.mark.parametrize("path", [fused_path, broadcast_path], ids=["fused", "elementwise"])
def test_a_weight_zero_channel_drops_its_loss_and_its_positives(path):
    # per sample: channel 0 [1, 0, 0] (1 positive), channel 1 [1, 1, 0] (2 positives), logits 0,
    # every element ln2/4; two samples alike.
    # Unweighted: 12 elements over 6 positives = 3 ln2 / 6 = ln2/2.
    # Channel 1 weighted 0: 6 elements over 2 positives = 3 ln2 / 4 = 0.519860 (had channel 1's
    # positives stayed in the divisor: 6 ln2/4 over 6 = ln2/4).
    logits = torch.zeros(2, 2, 1, 3)
    target = maps([1.0, 0.0, 0.0], [1.0, 1.0, 0.0])
    weights = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    loss = DistanceAwareFocalLoss()(*path(logits, target), weights)
    assert loss.item() == pytest.approx(0.519860, abs=1e-6)
    assert DistanceAwareFocalLoss()(*path(logits, target)).item() == pytest.approx(LN2 / 2, rel=1e-6)


@pytest.mark.parametrize("path", [fused_path, broadcast_path], ids=["fused", "elementwise"])
def test_fractional_weights_scale_the_loss_but_not_the_positive_count(path):
    # channel 0 [1, 0, 0] and channel 1 [1, 1, 0] in two samples, logits 0, every element ln2/4:
    # sample 0 weights (1, 0):   channel 0 gives 3 ln2/4, channel 1 nothing; 1 positive
    # sample 1 weights (0.5, 1): 0.5 * 3 ln2/4 + 3 ln2/4;                     1 + 2 positives
    # (3/4 + 3/8 + 3/4) ln2 / 4 = (15/32) ln2 = 0.324913
    logits = torch.zeros(2, 2, 1, 3)
    target = maps([1.0, 0.0, 0.0], [1.0, 1.0, 0.0])
    weights = torch.tensor([[1.0, 0.0], [0.5, 1.0]])
    loss = DistanceAwareFocalLoss()(*path(logits, target), weights)
    assert loss.item() == pytest.approx(15 / 32 * LN2, rel=1e-6)
    assert loss.item() == pytest.approx(0.324913, abs=1e-6)


def test_single_weight_one_half_halves_the_loss():
    # one channel [1, 0, 0] at weight 0.5: 0.5 * 3 ln2/4 over 1 positive = 3 ln2 / 8 = 0.259930
    loss = DistanceAwareFocalLoss()(torch.zeros(1, 1, 1, 3), maps([1.0, 0.0, 0.0]), torch.tensor([[0.5]]))
    assert loss.item() == pytest.approx(0.259930, abs=1e-6)


def test_fused_gradient_matches_the_closed_form_and_zero_weight_maps_get_none():
    # channel 0 [1, 0, 0.5] at weight 0.5, channel 1 [1, 0, 0] at weight 0: one positive counted.
    # d/dx: 0.5 * (-SLOPE, SLOPE, SLOPE / 16) for channel 0, zeros for channel 1
    logits = torch.zeros(1, 2, 1, 3, requires_grad=True)
    target = maps([1.0, 0.0, 0.5], [1.0, 0.0, 0.0])
    loss = DistanceAwareFocalLoss()(logits, target, torch.tensor([[0.5, 0.0]]))
    assert "Fused" in type(loss.grad_fn).__name__
    assert loss.item() == pytest.approx(0.5 * (POS + NEG + HALF), rel=1e-6)
    loss.backward()
    expected = torch.tensor([[[[-SLOPE, SLOPE, SLOPE / 16]], [[0.0, 0.0, 0.0]]]]) * 0.5
    torch.testing.assert_close(logits.grad, expected, rtol=1e-6, atol=1e-8)
    assert SLOPE == pytest.approx(0.298287, abs=1e-6)


def test_distance_aware_focal_loss_equals_probability_space_formula_in_float64():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=generator, dtype=torch.float64) * 4
    target = torch.rand(2, 3, 8, 8, generator=generator, dtype=torch.float64) ** 4
    target[target > 0.9] = 1.0
    weights = torch.tensor([[1.0, 0.0, 0.25], [2.0, 1.0, 0.0]], dtype=torch.float64)
    p = torch.sigmoid(logits)
    naive = torch.where(target == 1, -(1 - p) ** 2 * torch.log(p),
                        -(1 - target) ** 4 * p ** 2 * torch.log(1 - p))
    kept = (weights > 0)[:, :, None, None]
    expected = (naive * weights[:, :, None, None]).sum() / max(1, int(((target == 1) & kept).sum()))
    assert DistanceAwareFocalLoss()(logits, target, weights).item() == pytest.approx(expected.item(), rel=1e-10)


@pytest.mark.parametrize("beta, logit, expected", [
    # beta 0, logit ln 3 (p = 3/4): with beta 0 the negative branch ignores y, so both targets cost
    # -p^2 log(1 - p) = (9/16) ln 4 = 0.779791; 2 samples x 2 elements over max(1, 0 positives) =
    # 3.119162. As a positive the near-one target would cost -(1/4)^2 ln(3/4) = 0.017980 instead.
    (0.0, math.log(3.0), 3.119162),
    # beta 4, logit 0: the near-one target costs (1e-9)^4 ln2/4 ~ 1e-37, the zero target ln2/4;
    # 2 samples over max(1, 0 positives) = ln2/2 = 0.346574. Counted as positives: 4 ln2/4 / 2.
    (4.0, 0.0, 0.346574),
])
@pytest.mark.parametrize("path", [fused_path, broadcast_path], ids=["fused", "elementwise"])
def test_a_float64_target_just_below_one_is_not_a_positive(beta, logit, expected, path):
    target = torch.tensor([[[[1.0 - 1e-9, 0.0]]]], dtype=torch.float64)
    assert float(target[0, 0, 0, 0].to(torch.float32)) == 1.0  # the trap: it rounds to 1 in float32
    logits = torch.full((2, 1, 1, 2), logit, dtype=torch.float32, requires_grad=True)
    loss = DistanceAwareFocalLoss(beta=beta)(*path(logits, target))
    if path is fused_path:
        assert "Fused" in type(loss.grad_fn).__name__
    assert loss.item() == pytest.approx(expected, abs=2e-6)


def test_integer_targets_are_read_as_their_values():
    loss = DistanceAwareFocalLoss()(torch.zeros(1, 1, 1, 3), torch.tensor([[[[1, 0, 0]]]]))
    assert loss.item() == pytest.approx(POS + 2 * NEG, rel=1e-6)


def test_bfloat16_logits_take_the_elementwise_path_with_the_same_value():
    # logits 0 are exact in bfloat16; ln 2 is not (bfloat16 keeps 8 bits), hence rel 1e-2
    loss = DistanceAwareFocalLoss()(torch.zeros(1, 1, 1, 3, dtype=torch.bfloat16), maps([1.0, 0.5, 0.0]))
    assert loss.float().item() == pytest.approx(POS + HALF + NEG, rel=1e-2)


def test_integer_logits_are_refused():
    with pytest.raises(RuntimeError):  # NotImplementedError is a RuntimeError
        DistanceAwareFocalLoss()(torch.zeros(1, 1, 1, 3, dtype=torch.long), maps([1.0, 0.0, 0.0]))


def test_empty_batches_give_zero_focal_loss_and_an_empty_gradient():
    logits = torch.zeros(0, 2, 3, 3, requires_grad=True)
    target = torch.zeros(0, 2, 3, 3)
    loss = DistanceAwareFocalLoss()(logits, target, torch.zeros(0, 2))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad.shape == (0, 2, 3, 3)
    assert FocalLoss(reduction="positives")(logits, target).item() == 0.0
    assert FocalLoss(reduction="sum")(logits, target).item() == 0.0


@pytest.mark.parametrize("alpha, beta", [(-0.5, 4.0), (2.0, -1.0), (math.nan, 4.0), (2.0, math.nan)])
def test_focal_loss_refuses_negative_or_nan_alpha_and_beta(alpha, beta):
    with pytest.raises(ValueError, match="alpha >= 0 and beta >= 0"):
        DistanceAwareFocalLoss(alpha=alpha, beta=beta)


@pytest.mark.parametrize("loss", [DistanceAwareFocalLoss(), FocalLoss()], ids=["focal", "retina_focal"])
@pytest.mark.parametrize("bad", [1.5, -0.1, math.nan])
def test_focal_targets_outside_the_unit_interval_are_errors(loss, bad):
    target = maps([1.0, bad, 0.0])
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 1\]"):
        loss(torch.zeros(1, 1, 1, 3), target)
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 1\]"):  # the broadcast path too
        loss(torch.zeros(2, 1, 1, 3), target)


def test_the_fused_focal_loss_cannot_be_differentiated_twice():
    target = maps([1.0, 0.0, 0.5], dtype=torch.float64)
    logits = torch.tensor([[[[0.3, -0.2, 0.7]]]], dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError):
        grad, = torch.autograd.grad(DistanceAwareFocalLoss()(logits, target), logits, create_graph=True)
        torch.autograd.grad(grad.sum(), logits)
    # Through a chain, a once-only gradient must not come back as a wrong Hessian: for loss(w^2)
    # the true second derivative has a term in the focal loss's own curvature, which a constant
    # saved gradient would silently drop.
    w = logits.detach().clone().requires_grad_()
    with pytest.raises(RuntimeError):
        grad, = torch.autograd.grad(DistanceAwareFocalLoss()(w ** 2, target), w, create_graph=True)
        torch.autograd.grad(grad.sum(), w)


def test_the_elementwise_focal_path_is_differentiable_twice():
    # Against the closed form at p = 1/2 for a single negative target 0: L = p^2 softplus(x),
    # L' = p^2 (2(1 - p) softplus(x) + p) and, differentiating again,
    # L'' = p^2 (1 - p) [4 (1 - p) softplus(x) + 2 p] + p^2 (-2 p (1 - p) softplus(x) + 2 (1 - p) p + p (1 - p))
    # at p = 1/2, softplus = ln2: 1/8 (2 ln2 + 1) + 1/4 (-ln2/2 + 1/2 + 1/4) = ln2/8 + 5/16 = 0.399143
    logits = torch.zeros(2, 1, 1, 1, dtype=torch.float64, requires_grad=True)
    target = torch.zeros(1, 1, 1, 1, dtype=torch.float64)  # broadcast: the element-wise path
    grad, = torch.autograd.grad(DistanceAwareFocalLoss()(logits, target), logits, create_graph=True)
    second, = torch.autograd.grad(grad.sum(), logits)
    assert grad.flatten().tolist() == pytest.approx([SLOPE, SLOPE], rel=1e-9)
    assert second.flatten().tolist() == pytest.approx([LN2 / 8 + 5 / 16] * 2, rel=1e-9)


@pytest.mark.parametrize("loss", [DistanceAwareFocalLoss(), FocalLoss(), FocalLoss(gamma=0.5)])
def test_sigmoid_losses_stay_finite_for_logits_of_plus_minus_one_hundred(loss):
    logits = torch.tensor([-100.0, 100.0, -100.0, 100.0, 0.0]).view(1, 1, 1, 5).requires_grad_()
    target = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.3]).view(1, 1, 1, 5)
    value = loss(logits, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()


def test_confidently_wrong_logits_cost_about_their_magnitude():
    # x = -100 with target 1: (1-p)^2 ~ 1 and -log p = 100; x = 100 with target 0: p^2 ~ 1, -log(1-p) = 100
    logits = torch.tensor([-100.0, 100.0])
    target = torch.tensor([1.0, 0.0])
    values = distance_aware_focal_loss_elementwise(logits, target)
    assert values.tolist() == pytest.approx([100.0, 100.0])


# ----------------------------------------------------------------------------------------------
# FocalLoss (RetinaNet)
# ----------------------------------------------------------------------------------------------
def test_retinanet_example_uses_the_natural_log():
    # p = 0.9, y = 1, gamma = 2: FL = -(0.1)^2 ln 0.9 = 0.00105, CE = -ln 0.9 = 0.105.
    # One review of the paper prints 0.00045 and 0.0457: those are log base 10 (-log10 0.9 = 0.0458).
    logit = torch.tensor([math.log(0.9 / 0.1)])
    target = torch.tensor([1.0])
    focal = FocalLoss(alpha=None, gamma=2.0, reduction="sum")(logit, target).item()
    cross_entropy = FocalLoss(alpha=None, gamma=0.0, reduction="sum")(logit, target).item()
    assert focal == pytest.approx(0.00105, abs=5e-6)
    assert cross_entropy == pytest.approx(0.105, abs=5e-4)
    assert focal == pytest.approx(-(0.1 ** 2) * math.log(0.9), rel=1e-5)


def test_alpha_balances_positives_and_negatives():
    logit = torch.tensor([0.0, 0.0])
    target = torch.tensor([1.0, 0.0])
    values = FocalLoss(alpha=0.25, gamma=2.0, reduction="none")(logit, target)
    # each unbalanced term is 0.25 ln 2; alpha_t is 0.25 for the positive, 0.75 for the negative
    assert values.tolist() == pytest.approx([0.25 * 0.25 * LN2, 0.75 * 0.25 * LN2], rel=1e-6)


@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (None, 2.0), (0.5, 1.0), (None, 0.0)])
def test_focal_loss_equals_torchvision_where_torchvision_is_finite(alpha, gamma):
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 3, 5, 5, generator=generator) * 5
    target = torch.rand(4, 3, 5, 5, generator=generator)
    target[target > 0.8] = 1.0
    target[target < 0.2] = 0.0
    ours = FocalLoss(alpha=alpha, gamma=gamma, reduction="sum")(logits, target)
    theirs = torchvision.ops.sigmoid_focal_loss(logits, target, alpha=-1 if alpha is None else alpha,
                                                gamma=gamma, reduction="sum")
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


def test_focal_loss_positives_reduction_divides_by_targets_equal_to_one():
    logits = torch.zeros(1, 1, 1, 4)
    target = maps([1.0, 1.0, 0.0, 0.0])
    loss = FocalLoss(alpha=None, gamma=2.0, reduction="positives")(logits, target)
    assert loss.item() == pytest.approx(4 * 0.25 * LN2 / 2, rel=1e-6)


# RetinaNet's loss at logit 0 (p = 1/2), alpha 0.25, gamma 2, per element:
#   target 1:   alpha_t 0.25, (1 - p_t)^2 = 1/4, CE ln2            -> ln2 / 16  = 0.0625 ln2
#   target 0:   alpha_t 0.75, (1 - p_t)^2 = 1/4, CE ln2            -> 3 ln2 / 16 = 0.1875 ln2
#   target 0.5: alpha_t 0.5, 1 - p_t = 0.5 (torchvision's soft p_t), CE ln2 -> ln2 / 8 = 0.125 ln2
# channel 0 [1, 0, 0.5] weight 1:   (0.0625 + 0.1875 + 0.125) ln2         = 0.375 ln2, 1 positive
# channel 1 [1, 1, 0]   weight 0:   nothing, and its 2 positives not counted
# channel 2 [1, 0, 0]   weight 0.5: 0.5 (0.0625 + 0.1875 + 0.1875) ln2    = 0.21875 ln2, 1 positive
# sum 0.59375 ln2 = 0.411556
RETINA_TARGET = ([1.0, 0.0, 0.5], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0])
RETINA_WEIGHTS = [[1.0, 0.0, 0.5]]


@pytest.mark.parametrize("reduction, expected", [
    ("positives", 0.59375 * LN2 / 2),  # 2 counted positives
    ("sum", 0.59375 * LN2),
    ("mean", 0.59375 * LN2 / 9),  # over all B*K*H*W = 9 elements
])
def test_retina_focal_loss_with_keypoint_weights(reduction, expected):
    loss = FocalLoss(alpha=0.25, gamma=2.0, reduction=reduction)
    value = loss(torch.zeros(1, 3, 1, 3), maps(*RETINA_TARGET), torch.tensor(RETINA_WEIGHTS))
    assert value.item() == pytest.approx(expected, rel=1e-6)
    assert 0.59375 * LN2 == pytest.approx(0.411556, abs=1e-6)


def test_retina_focal_none_reduction_keeps_weighted_elements():
    values = FocalLoss(alpha=0.25, gamma=2.0, reduction="none")(
        torch.zeros(1, 3, 1, 3), maps(*RETINA_TARGET), torch.tensor(RETINA_WEIGHTS))
    expected = torch.tensor([[[[0.0625, 0.1875, 0.125]], [[0.0, 0.0, 0.0]],
                              [[0.03125, 0.09375, 0.09375]]]]) * LN2
    torch.testing.assert_close(values, expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kwargs, match", [({"gamma": -1.0}, "gamma"), ({"gamma": math.nan}, "gamma"),
                                           ({"reduction": "max"}, "reduction")])
def test_retina_focal_refuses_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FocalLoss(**kwargs)


# ----------------------------------------------------------------------------------------------
# HeatmapMSELoss and AdaptiveWingLoss
# ----------------------------------------------------------------------------------------------
def test_mse_conventions_of_mmpose_and_hrnet():
    pred = torch.zeros(1, 2, 2, 2)
    target = torch.ones(1, 2, 2, 2)
    visible = torch.tensor([[1.0, 0.0]])
    half = torch.tensor([[0.5, 0.5]])
    # mmpose: mean(w (p - t)^2) over 8 pixels: 4 * 1 / 8 = 0.5; HRNet: 0.5 * mean((w p - w t)^2) = 0.25
    assert HeatmapMSELoss("mmpose")(pred, target, visible).item() == pytest.approx(0.5)
    assert HeatmapMSELoss("hrnet")(pred, target, visible).item() == pytest.approx(0.25)
    # weights 0.5: mmpose 0.5 * 1 = 0.5; HRNet squares them: 0.5 * 0.25 * 1 = 0.125
    assert HeatmapMSELoss("mmpose")(pred, target, half).item() == pytest.approx(0.5)
    assert HeatmapMSELoss("hrnet")(pred, target, half).item() == pytest.approx(0.125)
    assert HeatmapMSELoss()(pred, target).item() == pytest.approx(1.0)


def test_mse_weights_scale_each_sample_and_channel_separately():
    # pred - target = 1 in channel 0 and 2 in channel 1, two samples; 16 elements.
    # weights [[1, 0], [0.5, 2]]: sum w d^2 = 4*1 + 0 + 4*0.5*1 + 4*2*4 = 38 -> mmpose 38/16 = 2.375;
    # HRNet: 0.5 * (4*1 + 0 + 4*0.25*1 + 4*4*4) / 16 = 0.5 * 69 / 16 = 2.15625
    pred = torch.zeros(2, 2, 2, 2)
    target = torch.ones(2, 2, 2, 2)
    target[:, 1] = 2.0
    weights = torch.tensor([[1.0, 0.0], [0.5, 2.0]])
    assert HeatmapMSELoss("mmpose")(pred, target, weights).item() == pytest.approx(2.375, rel=1e-6)
    assert HeatmapMSELoss("hrnet")(pred, target, weights).item() == pytest.approx(2.15625, rel=1e-6)


def test_mse_refuses_an_unknown_convention():
    with pytest.raises(ValueError, match="convention"):
        HeatmapMSELoss("caffe")


def test_adaptive_wing_matches_its_formula_inside_and_outside_theta():
    loss = AdaptiveWingLoss()  # alpha 2.1, omega 14, epsilon 1, theta 0.5
    pred = torch.tensor([0.2, 1.0]).view(1, 1, 1, 2)
    target = torch.tensor([0.0, 0.0]).view(1, 1, 1, 2)
    # |d| = 0.2 < theta, y = 0: 0.2^2.1 = exp(-3.379820) = 0.034052; 14 ln(1.034052) = 0.468813
    near = 14 * math.log1p(0.2 ** 2.1)
    # |d| = 1.0 >= theta: A = 14 / (1 + 0.5^2.1) * 2.1 * 0.5^1.1, C = 0.5 A - 14 ln(1 + 0.5^2.1)
    a = 14 / (1 + 0.5 ** 2.1) * 2.1 * 0.5 ** 1.1
    c = 0.5 * a - 14 * math.log1p(0.5 ** 2.1)
    assert near == pytest.approx(0.468813, abs=1e-6)
    assert a - c == pytest.approx(8.495946, abs=1e-6)
    assert loss(pred, target).item() == pytest.approx((near + a * 1.0 - c) / 2, rel=1e-6)


def test_adaptive_wing_keypoint_weights_scale_each_map():
    # channel 0: |d| = 0.2, y = 0 -> 0.468813 (weight 1); channel 1: |d| = 1, y = 0 -> A - C = 8.495946
    # (weight 0.5); channel 2 is weight 0. Mean over 3 elements: (0.468813 + 4.247973) / 3 = 1.572262
    loss = AdaptiveWingLoss()
    pred = torch.tensor([0.2, 1.0, 5.0]).view(1, 3, 1, 1)
    target = torch.zeros(1, 3, 1, 1)
    value = loss(pred, target, torch.tensor([[1.0, 0.5, 0.0]]))
    assert value.item() == pytest.approx(1.572262, abs=2e-6)


@pytest.mark.parametrize("y", [0.0, 0.4, 1.0])
def test_adaptive_wing_is_continuous_in_value_and_slope_at_theta(y):
    loss = AdaptiveWingLoss()
    target = torch.full((1, 1, 1, 2), y, dtype=torch.float64)
    pred = (target + torch.tensor([0.5 - 1e-7, 0.5 + 1e-7], dtype=torch.float64).view(1, 1, 1, 2)).requires_grad_()
    values = torch.stack([loss(pred[..., i:i + 1], target[..., i:i + 1]) for i in range(2)])
    assert values[0].item() == pytest.approx(values[1].item(), abs=1e-5)
    grads = [torch.autograd.grad(values[i], pred, retain_graph=True)[0][..., i].item() for i in range(2)]
    assert grads[0] == pytest.approx(grads[1], rel=1e-4)


@pytest.mark.parametrize("kwargs", [{"alpha": 1.0}, {"epsilon": 0.0}, {"theta": -0.5}])
def test_adaptive_wing_refuses_bad_settings(kwargs):
    with pytest.raises(ValueError, match="AdaptiveWingLoss needs"):
        AdaptiveWingLoss(**kwargs)


# ----------------------------------------------------------------------------------------------
# The shared interface
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss_class", ALL_LOSSES)
def test_every_loss_takes_keypoint_weights_and_a_weight_zero_map_adds_nothing(loss_class):
    # channel 0: prediction 0 against target 0 at weight 1; channel 1: prediction 3 at weight 0.
    loss = loss_class()
    pred = torch.zeros(1, 2, 1, 2)
    pred[0, 1] = 3.0
    target = torch.zeros(1, 2, 1, 2)
    weights = torch.tensor([[1.0, 0.0]])
    value = loss(pred, target, weights).item()
    if loss_class in (HeatmapMSELoss, AdaptiveWingLoss):
        assert value == 0.0  # channel 0 predicts its target exactly; channel 1 is weighted out
    elif loss_class is DistanceAwareFocalLoss:
        assert value == pytest.approx(2 * NEG, rel=1e-6)  # two negatives at p = 1/2, no positives
    else:  # RetinaNet, mean over 4 elements of which two count: 2 * 0.1875 ln2 / 4
        assert value == pytest.approx(2 * 0.1875 * LN2 / 4, rel=1e-6)


@pytest.mark.parametrize("loss_class", ALL_LOSSES)
@pytest.mark.parametrize("shape", [(2,), (2, 3, 1), (3, 2), (2, 4), (1, 3), ()])
def test_every_loss_refuses_keypoint_weights_of_the_wrong_shape(loss_class, shape):
    pred, target = torch.zeros(2, 3, 2, 2), torch.zeros(2, 3, 2, 2)
    with pytest.raises(ValueError, match=r"keypoint_weights must have shape \(2, 3\)"):
        loss_class()(pred, target, torch.ones(shape))


@pytest.mark.parametrize("loss_class", ALL_LOSSES)
@pytest.mark.parametrize("bad", [-1.0, -1e-6, math.nan, math.inf])
def test_every_loss_refuses_negative_or_non_finite_keypoint_weights(loss_class, bad):
    pred, target = torch.zeros(2, 3, 2, 2), torch.zeros(2, 3, 2, 2)
    weights = torch.ones(2, 3)
    weights[1, 2] = bad
    with pytest.raises(ValueError, match="keypoint_weights must be finite and >= 0"):
        loss_class()(pred, target, weights)


def test_per_keypoint_weight_broadcasts_over_the_map_in_the_prediction_dtype():
    weight = per_keypoint_weight(torch.tensor([[1, 0, 2]]), torch.zeros(1, 3, 4, 5, dtype=torch.float64))
    assert weight.shape == (1, 3, 1, 1) and weight.dtype == torch.float64
    assert weight.flatten().tolist() == [1.0, 0.0, 2.0]


def test_losses_are_registered_with_their_output_activation():
    activations = {name: LOSSES.get(name).output_activation for name in ("awing", "focal", "mse", "retina_focal")}
    assert activations == {"awing": "identity", "focal": "sigmoid", "mse": "identity", "retina_focal": "sigmoid"}


def test_losses_are_built_by_name_and_the_prior_bias_gives_the_prior():
    built = build_loss("focal", alpha=1.0, beta=3.0)
    assert isinstance(built, DistanceAwareFocalLoss) and (built.alpha, built.beta) == (1.0, 3.0)
    with pytest.raises(ValueError, match=r"unknown loss.name 'l7'; choose one of \[") as error:
        build_loss("l7")
    assert all(repr(name) in str(error.value) for name in ("awing", "focal", "mse", "retina_focal"))
    # -log((1 - 0.1) / 0.1) = -ln 9 = -2.197225, and sigmoid of it is 0.1
    assert prior_bias(0.1) == pytest.approx(-2.197225, abs=1e-6)
    assert torch.sigmoid(torch.tensor(prior_bias(0.1))).item() == pytest.approx(0.1)
