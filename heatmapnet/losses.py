"""Heatmap losses: the element-wise formula apart from weighting and reduction (as mmdet does).

Every heatmap loss has one signature, ``loss(prediction, target, keypoint_weights=None)``:
``prediction`` and ``target`` (B, K, H, W), ``keypoint_weights`` (B, K) >= 0 multiplies every
element of keypoint k's map in sample b, so a weight of 0 removes that map from the loss (and,
for losses divided by their positives, its positives from the count). Multi-instance maps pass
no weights. Losses are registered in :data:`LOSSES` by their config name; each class says which
activation turns the network's output into a heatmap (``output_activation``): losses that imply a
sigmoid take logits, never probabilities, and work in log space (``logsigmoid``), so loss and
gradient stay finite for logits in [-100, 100]; MSE and Adaptive Wing compare the raw output
with the target heatmap directly.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import Registry

LOSSES: Registry = Registry("loss.name")
REDUCTIONS = ("none", "mean", "sum")


def reduce_loss(loss: torch.Tensor, weight: Optional[torch.Tensor] = None, reduction: str = "mean",
                avg_factor: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Weight an element-wise loss, then reduce it: ``avg_factor`` (a tensor, so no host sync)
    replaces the element count as the divisor of a mean."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if weight is not None:
        loss = loss * weight
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if avg_factor is None:
        return loss.mean()
    return loss.sum() / avg_factor


# ----------------------------------------------------------------------------------------------
# CornerNet's distance-aware (penalty-reduced) focal loss
# ----------------------------------------------------------------------------------------------
def distance_aware_focal_loss_elementwise(logits: torch.Tensor, target: torch.Tensor,
                                          alpha: float = 2.0, beta: float = 4.0) -> torch.Tensor:
    """-(1-p)^alpha log p where the target is exactly 1, -(1-y)^beta p^alpha log(1-p) elsewhere."""
    log_p = F.logsigmoid(logits)
    log_not_p = F.logsigmoid(-logits)
    positive_loss = -torch.exp(alpha * log_not_p) * log_p
    negative_loss = -torch.pow(1.0 - target, beta) * torch.exp(alpha * log_p) * log_not_p
    return torch.where(target == 1, positive_loss, negative_loss)


# Elements per chunk of the fused loss: on CPU a chunk's dozen temporaries stay in the L2 cache;
# on CUDA chunks only bound the temporaries' memory, so they are large enough to fill the device.
_FOCAL_CHUNK = {"cpu": 1 << 15, "cuda": 1 << 22}
_FUSED_DTYPES = (torch.float32, torch.float64)


def _power(base: torch.Tensor, exponent: float) -> torch.Tensor:
    """``base ** exponent``; small integer exponents by repeated squaring (a few multiplications,
    where the general ``pow`` kernel costs an exp and a log per element)."""
    if exponent != int(exponent) or not 0 < exponent <= 16:
        return base.pow(exponent)
    exponent = int(exponent)
    result, square = None, base
    while exponent:
        if exponent & 1:
            if result is None:
                result = square.clone() if square is base else square
            else:
                result.mul_(square)
        exponent >>= 1
        if exponent:
            square = square * square
    return result


def _focal_chunk(x: torch.Tensor, y: torch.Tensor, keep: Optional[torch.Tensor], alpha: float, beta: float,
                 grad_out: Optional[torch.Tensor]):
    """Loss sum and positive count of one flat chunk; writes d(sum)/dx into ``grad_out`` if given.
    ``y`` keeps the target's own dtype until positives are decided (a float64 1 - 1e-9 is not a
    positive, though it rounds to 1 in float32); ``keep`` holds per-element weights or None.

    Both branches are one formula in z = -x at positives, x elsewhere: with q = sigmoid(z) and
    m = 1 at positives, (1 - y)^beta elsewhere, the loss is m q^alpha softplus(z) (q = 1 - p and
    softplus(z) = -log p at a positive; q = p and softplus(z) = -log(1 - p) elsewhere), and
    dL/dz = m q^alpha (alpha (1 - q) softplus(z) + q), dL/dx = sign(z / x) dL/dz.
    """
    positive = y == 1
    y = y.to(x.dtype)
    if keep is not None:
        positive &= keep > 0
    sign = torch.where(positive, -1.0, 1.0)
    z = x * sign
    q = torch.sigmoid(z)
    softplus = F.softplus(z)
    weight = _power(torch.rsub(y, 1.0), beta).masked_fill_(positive, 1.0)
    if keep is not None:
        weight.mul_(keep)
    weight.mul_(_power(q, alpha))
    if grad_out is not None:
        slope = torch.addcmul(q, torch.rsub(q, 1.0), softplus, value=alpha)
        torch.mul(slope.mul_(weight), sign, out=grad_out)
    return weight.mul_(softplus).sum(), torch.count_nonzero(positive)


class _FusedDistanceAwareFocal(torch.autograd.Function):
    """Sum / max(1, positives) of CornerNet's loss in one chunked sweep, gradient in closed form.

    The sweep writes the unscaled gradient while the chunk is in cache, so the only full-size
    tensor saved for backward is that gradient: no sigmoid, log or mask tensors of the input's
    size are kept, and backward is a single scaling by grad_output / max(1, positives).
    """

    @staticmethod
    def forward(ctx, logits, target, keep, alpha, beta, with_grad):
        """``with_grad``: grad mode was on outside (inside forward it is always off) and the logits
        require a gradient; only then is the gradient computed."""
        x = logits.reshape(-1)
        y = target.reshape(-1)
        keep = None if keep is None else keep.reshape(-1)
        grad = torch.empty_like(x) if with_grad else None
        step = _FOCAL_CHUNK.get(x.device.type, _FOCAL_CHUNK["cuda"])
        losses, counts = [], []
        for start in range(0, x.numel(), step):
            part = slice(start, start + step)
            loss, count = _focal_chunk(x[part], y[part], None if keep is None else keep[part], alpha, beta,
                                       None if grad is None else grad[part])
            losses.append(loss)
            counts.append(count)
        total = torch.stack(losses).sum(dtype=torch.float64) if losses else x.new_zeros((), dtype=torch.float64)
        divisor = (torch.stack(counts).sum() if counts else torch.zeros((), dtype=torch.long, device=x.device))
        divisor = divisor.clamp_min(1).to(x.dtype)
        ctx.save_for_backward(grad, divisor)
        ctx.shape = logits.shape
        return (total.to(x.dtype) / divisor)

    @staticmethod
    def backward(ctx, grad_output):
        # The saved gradient is a constant: there is no second derivative through it. Grad mode is on
        # here exactly under create_graph=True; refuse it, since @once_differentiable only objects when
        # grad_output requires grad and a chain such as loss(w ** 2) would get a silently wrong Hessian.
        if torch.is_grad_enabled():
            raise RuntimeError("the fused focal loss is differentiable once: create_graph=True is not supported")
        grad, divisor = ctx.saved_tensors
        return (grad * (grad_output / divisor)).view(ctx.shape), None, None, None, None, None


@LOSSES.register("focal")
class DistanceAwareFocalLoss(nn.Module):
    """CornerNet's penalty-reduced focal loss, summed and divided by max(1, positives in the batch).

    ``keypoint_weights`` (B, K) multiply each map's elements; maps of weight 0 add neither loss nor
    positives. Targets must lie in [0, 1]; a positive is a target exactly equal to 1 in its own
    dtype. The divisor stays a tensor: no host synchronisation. Same-shaped float32/float64 inputs
    take a fused, chunked path with a closed-form gradient (a fraction of the time and memory of
    autograd through the element-wise formula; it is differentiable once); anything else
    (broadcast targets, half precision) uses :func:`distance_aware_focal_loss_elementwise`.
    """

    output_activation = "sigmoid"

    def __init__(self, alpha: float = 2.0, beta: float = 4.0):
        super().__init__()
        if not (alpha >= 0 and beta >= 0):  # also refuses NaN
            raise ValueError(f"focal loss needs alpha >= 0 and beta >= 0, got alpha={alpha}, beta={beta}")
        self.alpha = float(alpha)
        self.beta = float(beta)

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                keypoint_weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        _check_unit_interval(target)
        weight = None if keypoint_weights is None else per_keypoint_weight(keypoint_weights, logits)
        if (logits.dtype in _FUSED_DTYPES and target.shape == logits.shape and target.device == logits.device
                and not target.requires_grad):
            keep = None if weight is None else weight.expand(logits.shape).contiguous()
            with_grad = torch.is_grad_enabled() and logits.requires_grad
            return _FusedDistanceAwareFocal.apply(logits.contiguous(), target.contiguous(), keep,
                                                  self.alpha, self.beta, with_grad)
        loss = distance_aware_focal_loss_elementwise(logits, target, self.alpha, self.beta)
        positive = (target == 1).expand(loss.shape)  # a broadcast target's positives count once per sample
        if weight is not None:
            positive = positive & (weight > 0)
        num_positive = positive.sum().clamp_min(1).to(loss.dtype)
        return reduce_loss(loss, weight, "mean", avg_factor=num_positive)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}"


def _check_unit_interval(target: torch.Tensor) -> None:
    """Focal losses read the target as a probability: one pass to check it lies in [0, 1]."""
    if target.numel() == 0:
        return
    low, high = torch.aminmax(target.detach())
    if not (bool(low >= 0) and bool(high <= 1)):  # NaN fails both
        raise ValueError(f"focal loss targets must lie in [0, 1]; got values in [{float(low)}, {float(high)}]")


# ----------------------------------------------------------------------------------------------
# RetinaNet's alpha-balanced focal loss
# ----------------------------------------------------------------------------------------------
def focal_loss_elementwise(logits: torch.Tensor, target: torch.Tensor, alpha: Optional[float] = 0.25,
                           gamma: float = 2.0) -> torch.Tensor:
    """-alpha_t (1 - p_t)^gamma log p_t for targets in [0, 1] (soft targets as torchvision defines).

    Equal in value to ``torchvision.ops.sigmoid_focal_loss``, which is not used because it forms
    (1 - p_t)^gamma from the sigmoid: for gamma < 1 its gradient is NaN at saturated logits. Here
    log(1 - p_t) = logaddexp(log t + log(1-p), log(1-t) + log p) keeps everything in log space.
    """
    log_p = F.logsigmoid(logits)
    log_not_p = F.logsigmoid(-logits)
    cross_entropy = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if gamma == 0:
        modulated = cross_entropy
    else:
        log_miss = torch.logaddexp(torch.log(target) + log_not_p, torch.log1p(-target) + log_p)
        modulated = torch.exp(gamma * log_miss) * cross_entropy
    if alpha is None:
        return modulated
    return (alpha * target + (1.0 - alpha) * (1.0 - target)) * modulated


@LOSSES.register("retina_focal")
class FocalLoss(nn.Module):
    """RetinaNet's binary focal loss on logits; ``alpha=None`` disables balancing, ``gamma=0``
    gives (balanced) binary cross-entropy. ``reduction="positives"`` divides the sum by
    max(1, number of targets equal to 1 in maps of non-zero weight), as RetinaNet normalises by
    assigned anchors."""

    output_activation = "sigmoid"

    def __init__(self, alpha: Optional[float] = 0.25, gamma: float = 2.0, reduction: str = "mean"):
        super().__init__()
        if reduction not in REDUCTIONS + ("positives",):
            raise ValueError(f"reduction must be one of {REDUCTIONS + ('positives',)}, got {reduction!r}")
        if not gamma >= 0:  # also refuses NaN
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.alpha = alpha
        self.gamma = float(gamma)
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                keypoint_weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        _check_unit_interval(target)
        loss = focal_loss_elementwise(logits, target, self.alpha, self.gamma)
        weight = None if keypoint_weights is None else per_keypoint_weight(keypoint_weights, logits)
        if self.reduction == "positives":
            positive = target == 1
            if weight is not None:
                positive = positive & (weight > 0)
            num_positive = positive.sum().clamp_min(1).to(loss.dtype)
            return reduce_loss(loss, weight, "mean", avg_factor=num_positive)
        return reduce_loss(loss, weight, self.reduction)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, gamma={self.gamma}, reduction={self.reduction!r}"


# ----------------------------------------------------------------------------------------------
# The MSE heatmap baseline
# ----------------------------------------------------------------------------------------------
MSE_CONVENTIONS = ("mmpose", "hrnet")


@LOSSES.register("mse")
class HeatmapMSELoss(nn.Module):
    """HRNet/mmpose heatmap regression loss with per-keypoint target weights (visibility).

    Both conventions average over B*K*H*W. ``"mmpose"`` (mmpose 1.x ``KeypointMSELoss``):
    mean(w * (pred - target)^2). ``"hrnet"`` (HRNet's ``JointsMSELoss``): 0.5 * mean((w*pred -
    w*target)^2), i.e. a factor 0.5 and the weights squared. With 0/1 visibility weights the two
    differ only by the 0.5.
    """

    output_activation = "identity"

    def __init__(self, convention: str = "mmpose"):
        super().__init__()
        if convention not in MSE_CONVENTIONS:
            raise ValueError(f"convention must be one of {MSE_CONVENTIONS}, got {convention!r}")
        self.convention = convention

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                keypoint_weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        squared = (pred - target) ** 2
        if keypoint_weights is None:
            weight = None
        else:
            weight = per_keypoint_weight(keypoint_weights, pred)
            if self.convention == "hrnet":
                weight = weight * weight
        loss = reduce_loss(squared, weight, "mean")
        return 0.5 * loss if self.convention == "hrnet" else loss

    def extra_repr(self) -> str:
        return f"convention={self.convention!r}"


def per_keypoint_weight(keypoint_weights: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """(B, K) keypoint weights -> broadcastable to (B, K, H, W) heatmaps; wrong shapes and
    negative or non-finite weights are errors."""
    if tuple(keypoint_weights.shape) != tuple(pred.shape[:2]):
        raise ValueError(f"keypoint_weights must have shape {tuple(pred.shape[:2])}, "
                         f"got {tuple(keypoint_weights.shape)}")
    weight = keypoint_weights.to(device=pred.device, dtype=pred.dtype)
    if weight.numel() and not bool(torch.isfinite(weight).all() & (weight >= 0).all()):
        raise ValueError("keypoint_weights must be finite and >= 0")
    return weight[:, :, None, None]


# ----------------------------------------------------------------------------------------------
# Adaptive Wing loss (Wang, Bo and Fuxin, ICCV 2019)
# ----------------------------------------------------------------------------------------------
def adaptive_wing_loss_elementwise(pred: torch.Tensor, target: torch.Tensor, alpha: float = 2.1,
                                   omega: float = 14.0, epsilon: float = 1.0, theta: float = 0.5) -> torch.Tensor:
    """omega ln(1 + |d/epsilon|^(alpha-y)) for |d| < theta, else A|d| - C, with A and C chosen so
    that value and slope are continuous at |d| = theta (d = y - pred, y the target)."""
    delta = (target - pred).abs()
    power = alpha - target
    ratio = theta / epsilon
    ratio_pow = torch.pow(torch.as_tensor(ratio, dtype=pred.dtype, device=pred.device), power)
    slope = omega / (1.0 + ratio_pow) * power * ratio_pow / ratio / epsilon
    offset = theta * slope - omega * torch.log1p(ratio_pow)
    near = omega * torch.log1p(torch.pow(delta / epsilon, power))
    far = slope * delta - offset
    return torch.where(delta < theta, near, far)


@LOSSES.register("awing")
class AdaptiveWingLoss(nn.Module):
    """Adaptive Wing loss for heatmap regression, mean over B*K*H*W, with optional (B, K) weights."""

    output_activation = "identity"

    def __init__(self, alpha: float = 2.1, omega: float = 14.0, epsilon: float = 1.0, theta: float = 0.5):
        super().__init__()
        if alpha <= 1 or epsilon <= 0 or theta <= 0:
            raise ValueError("AdaptiveWingLoss needs alpha > 1 (so alpha - y > 0), epsilon > 0, theta > 0")
        self.alpha, self.omega, self.epsilon, self.theta = float(alpha), float(omega), float(epsilon), float(theta)

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                keypoint_weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        loss = adaptive_wing_loss_elementwise(pred, target, self.alpha, self.omega, self.epsilon, self.theta)
        weight = None if keypoint_weights is None else per_keypoint_weight(keypoint_weights, pred)
        return reduce_loss(loss, weight, "mean")

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, omega={self.omega}, epsilon={self.epsilon}, theta={self.theta}"


class HeatmapCriterion(nn.Module):
    """A heatmap loss applied to a collated batch: ``loss(output, batch["heatmaps"],
    batch["heatmap_weights"])``, or without weights where ``weighted`` is False (maps that mix
    instances, whose channels all count in full: no full-size weight tensor is built).
    ``target_keys``: what the training step moves to the device."""

    def __init__(self, loss: nn.Module, weighted: bool = True):
        super().__init__()
        self.loss = loss
        self.weighted = bool(weighted)
        self.target_keys = ("heatmaps", "heatmap_weights") if self.weighted else ("heatmaps",)

    def forward(self, output: torch.Tensor, batch: dict) -> torch.Tensor:
        return self.loss(output, batch["heatmaps"], batch["heatmap_weights"] if self.weighted else None)


def build_loss(name: str, **kwargs) -> nn.Module:
    """A heatmap loss by its registry name (``focal``, ``retina_focal``, ``mse``, ``awing``)."""
    return LOSSES.get(name)(**kwargs)


def prior_bias(probability: float = 0.1) -> float:
    """RetinaNet's initial bias -log((1 - pi) / pi), so a fresh sigmoid head predicts ``pi``."""
    return -math.log((1.0 - probability) / probability)
