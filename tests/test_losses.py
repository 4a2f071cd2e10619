"""Losses against hand-computed values; finiteness at extreme logits."""
import math

import pytest
import torch
import torchvision

from heatmapnet.losses import (AdaptiveWingLoss, DistanceAwareFocalLoss, FocalLoss, HeatmapMSELoss, build_loss,
                               distance_aware_focal_loss_elementwise, prior_bias)

LN2 = math.log(2.0)


# ----------------------------------------------------------------------------------------------
# DistanceAwareFocalLoss
# ----------------------------------------------------------------------------------------------
def test_distance_aware_focal_loss_matches_hand_values_at_p_one_half():
    # logits 0 -> p = 0.5; alpha = 2, beta = 4.
    # target 1:   -(1 - 0.5)^2 log 0.5            = 0.25 ln 2   = 0.173287
    # target 0.5: -(1 - 0.5)^4 (0.5)^2 log(0.5)   = ln2 / 64    = 0.010830
    # target 0:   -(0.5)^2 log(0.5)               = 0.25 ln 2   = 0.173287
    # sum / max(1, one positive) = 0.357404
    logits = torch.zeros(1, 1, 1, 3)
    target = torch.tensor([[[[1.0, 0.5, 0.0]]]])
    loss = DistanceAwareFocalLoss()(logits, target)
    assert loss.item() == pytest.approx(0.25 * LN2 + LN2 / 64 + 0.25 * LN2, rel=1e-6)


def test_distance_aware_focal_loss_divides_by_the_number_of_positives():
    logits = torch.zeros(2, 1, 2, 2)
    target = torch.zeros(2, 1, 2, 2)
    target[0, 0, 0, 0] = 1.0
    target[1, 0, 1, 1] = 1.0
    # 2 positives at 0.25 ln2 and 6 negatives at 0.25 ln2, divided by 2
    assert DistanceAwareFocalLoss()(logits, target).item() == pytest.approx(8 * 0.25 * LN2 / 2, rel=1e-6)


def test_distance_aware_focal_loss_without_positives_divides_by_one():
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.full((1, 1, 2, 2), 0.5)
    # 4 negatives at ln2 / 64 each
    assert DistanceAwareFocalLoss()(logits, target).item() == pytest.approx(4 * LN2 / 64, rel=1e-6)


def test_ignore_mask_removes_pixels_and_their_positives():
    logits = torch.zeros(1, 1, 1, 3)
    target = torch.tensor([[[[1.0, 1.0, 0.0]]]])
    ignore = torch.tensor([[[[False, True, False]]]])
    # kept: one positive and one negative at 0.25 ln2 each, one positive counted
    assert DistanceAwareFocalLoss()(logits, target, ignore).item() == pytest.approx(0.5 * LN2, rel=1e-6)


def test_distance_aware_focal_loss_equals_probability_space_formula_in_float64():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=generator, dtype=torch.float64) * 4
    target = torch.rand(2, 3, 8, 8, generator=generator, dtype=torch.float64) ** 4
    target[target > 0.9] = 1.0
    p = torch.sigmoid(logits)
    naive = torch.where(target == 1, -(1 - p) ** 2 * torch.log(p),
                        -(1 - target) ** 4 * p ** 2 * torch.log(1 - p))
    expected = naive.sum() / max(1, int((target == 1).sum()))
    assert DistanceAwareFocalLoss()(logits, target).item() == pytest.approx(expected.item(), rel=1e-10)


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
    logits = torch.zeros(4)
    target = torch.tensor([1.0, 1.0, 0.0, 0.0])
    loss = FocalLoss(alpha=None, gamma=2.0, reduction="positives")(logits, target)
    assert loss.item() == pytest.approx(4 * 0.25 * LN2 / 2, rel=1e-6)


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
    with pytest.raises(ValueError, match="target_weight must have shape"):
        HeatmapMSELoss()(pred, target, torch.ones(2))


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
    assert loss(pred, target).item() == pytest.approx((near + a * 1.0 - c) / 2, rel=1e-6)


@pytest.mark.parametrize("y", [0.0, 0.4, 1.0])
def test_adaptive_wing_is_continuous_in_value_and_slope_at_theta(y):
    loss = AdaptiveWingLoss()
    target = torch.full((1, 1, 1, 2), y, dtype=torch.float64)
    pred = (target + torch.tensor([0.5 - 1e-7, 0.5 + 1e-7], dtype=torch.float64).view(1, 1, 1, 2)).requires_grad_()
    values = torch.stack([loss(pred[..., i:i + 1], target[..., i:i + 1]) for i in range(2)])
    assert values[0].item() == pytest.approx(values[1].item(), abs=1e-5)
    grads = [torch.autograd.grad(values[i], pred, retain_graph=True)[0][..., i].item() for i in range(2)]
    assert grads[0] == pytest.approx(grads[1], rel=1e-4)


def test_losses_are_built_by_name_and_the_prior_bias_gives_the_prior():
    assert isinstance(build_loss("focal", alpha=2.0, beta=4.0), DistanceAwareFocalLoss)
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss("l7")
    # -log((1 - 0.1) / 0.1) = -ln 9 = -2.197225, and sigmoid of it is 0.1
    assert prior_bias(0.1) == pytest.approx(-2.197225, abs=1e-6)
    assert torch.sigmoid(torch.tensor(prior_bias(0.1))).item() == pytest.approx(0.1)
