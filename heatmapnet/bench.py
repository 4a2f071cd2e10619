"""``heatmapnet bench``: our fast paths timed beside baselines written in the reference code's style.

Every case runs both implementations in one process on the same inputs: a warm-up, then the
median of ``--repeats`` runs (more for calls of a few milliseconds), and separately each one's
peak memory, so the reported ratios (ours / baseline) are measured side by side rather than
quoted from elsewhere. The baselines are the anchors' published functions as
:mod:`heatmapnet.testing.reference` writes them (CenterNet's per-object drawing loop and focal loss, HRNet's
and mmpose's per-keypoint decoding loops, CenterNet's multi-pose decoding with its per-image
post-processing); cases that have one are also set beside a floor (writing or reading the data
once). The same functions are the oracles the fast paths are
checked against in ``tests/test_bench.py``, which also states where ours differs by design.

Peak memory. On CUDA: ``torch.cuda.max_memory_allocated`` above the level before the call. On
CPU, torch has no peak counter, so two exact ledgers are combined: the profiler's memory events
(``profile_memory=True``: every allocation and free of torch's CPU allocator, whose running sum is
the live tensor bytes; its maximum is the peak) and ``tracemalloc`` (numpy reports its array
buffers to it). The sum of the two peaks is exact when only one of them allocates and an upper
bound otherwise. Inputs made before the call are not counted; outputs alive at its end are.

CPU timings use one intra-op thread unless ``--threads`` says otherwise: the numpy baselines are
single-threaded, and on a shared machine multi-threaded timings of small ops are erratic.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from .stride import OUTPUT_STRIDE
from .decode import decode_keypoints
from .losses import DistanceAwareFocalLoss, HeatmapCriterion
from .targets import TRUNCATE_SIGMAS, lazy_zeros, render_heatmaps_batched, sigma_from_radius
from .testing import crowd_scene, decode_inputs, focal_inputs, people_maps
from .testing.reference import (CENTERNET_HP_THRESH, centernet_focal_loss, centernet_keypoint_heatmaps,
                                centernet_multi_pose_decode, centernet_multi_pose_post_process, centernet_nms,
                                centernet_topk_channel, centernet_transpose_and_gather_feat, hrnet_quarter_decode,
                                mmpose_dark_decode)

CASES = ("targets", "focal_loss", "decode_quarter", "decode_dark", "data_loader", "train_step",
         "decode_people", "inference", "predict_stream")


@dataclass(frozen=True)
class Settings:
    device: torch.device
    repeats: int = 5
    quick: bool = False
    train_threads: int = 0  # CPU threads of a training step (0: the ones torch has); a trainer uses them all


# ----------------------------------------------------------------------------------------------
# measuring
# ----------------------------------------------------------------------------------------------
def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


MIN_TIMED_SECONDS = 0.25  # fast calls are repeated past ``repeats`` until this much time is timed


def median_ms(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn`` in milliseconds over at least ``repeats`` runs, after one warm-up
    run; a call of a few milliseconds runs until MIN_TIMED_SECONDS are timed (at most 500 runs),
    so that one scheduler hiccup on a shared machine cannot move its median."""
    fn()
    times = []
    while len(times) < max(1, repeats) or (sum(times) < MIN_TIMED_SECONDS and len(times) < 500):
        _synchronize(device)
        start = time.perf_counter()
        fn()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2: the profiler's C++ side logs every start and stop there."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Peak bytes allocated while ``fn`` runs, above the level before it (see the module docstring)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        tracemalloc.start()  # inside the profiler, so that its own bookkeeping is not counted
        try:
            fn()
            _, numpy_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = torch_peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        torch_peak = max(torch_peak, live)
    return int(torch_peak + numpy_peak)


def _ratio(ours: Optional[float], baseline: Optional[float]) -> Optional[float]:
    if ours is None or not baseline:
        return None
    return ours / baseline


def _result(name: str, device: torch.device, goal: str, ours_ms=None, baseline_ms=None, ours_bytes=None,
            baseline_bytes=None, met=None, skipped: Optional[str] = None, **details) -> dict:
    return {"name": name, "device": device.type, "time_ratio": _ratio(ours_ms, baseline_ms),
            "memory_ratio": _ratio(ours_bytes, baseline_bytes), "goal": goal,
            "met": None if skipped else bool(met), "skipped": skipped, "ours_ms": ours_ms,
            "baseline_ms": baseline_ms,
            "ours_peak_mb": None if ours_bytes is None else ours_bytes / 2 ** 20,
            "baseline_peak_mb": None if baseline_bytes is None else baseline_bytes / 2 ** 20, **details}


# ----------------------------------------------------------------------------------------------
# 1. targets: CenterNet's per-object drawing loop
# ----------------------------------------------------------------------------------------------
def targets_agreement(points: np.ndarray, radii: np.ndarray, centernet_maps: np.ndarray) -> dict:
    """How our renderer's maps compare with CenterNet's where both draw the same Gaussians: ours
    drawn at CenterNet's integer pixels (its truncation of the points) with sigma = (2r + 1) / 6.
    Within 3 sigma of every point (where CenterNet's value is >= exp(-4.5)) the two must be
    equal; beyond it ours is 0 where CenterNet fills its square window's corners, so ours may
    only be lower there."""
    batch, people, keypoints = points.shape[:3]
    size = centernet_maps.shape[2:]
    inside = (points[..., 0] >= 0) & (points[..., 0] < size[1]) & (points[..., 1] >= 0) & (points[..., 1] < size[0])
    sigmas = np.repeat(sigma_from_radius(radii.astype(np.float32)), keypoints, axis=1)
    weights = torch.tensor(inside.reshape(batch, -1), dtype=torch.float32)  # CenterNet skips the points off the map
    ours = render_heatmaps_batched(torch.tensor(np.trunc(points).reshape(batch, -1, 2)),
                                   torch.arange(keypoints).repeat(people).expand(batch, -1), torch.tensor(sigmas),
                                   keypoints, size, weights=weights).numpy()
    difference = ours - centernet_maps
    within = centernet_maps >= math.exp(-TRUNCATE_SIGMAS ** 2 / 2)
    return {"max_difference_within_3_sigma": float(np.abs(difference[within]).max(initial=0.0)),
            "max_excess_beyond_3_sigma": float(difference[~within].max(initial=0.0)),
            "baseline_only_pixels": int(((ours == 0) & (centernet_maps > 0)).sum())}


def bench_targets(settings: Settings) -> dict:
    """Goal: >= 20x faster than the loop, and within 3x of allocating and writing the output once.
    Ours draws each sub-pixel point with sigma = (2r + 1) / 6 of its person's CenterNet radius r,
    the Gaussian CenterNet draws at the point's truncated pixel."""
    batch, people, keypoints, size = (4, 3, 17, 32) if settings.quick else (32, 10, 17, 128)
    points, radii = crowd_scene(batch, people, keypoints, size)
    sigmas = sigma_from_radius(radii.astype(np.float32))
    device = settings.device
    flat_points = torch.tensor(points.reshape(batch, -1, 2), device=device)
    labels = torch.arange(keypoints, device=device).repeat(people).expand(batch, -1)
    flat_sigmas = torch.tensor(np.repeat(sigmas, keypoints, axis=1), device=device)
    shape = (batch, keypoints, size, size)

    def ours():
        return render_heatmaps_batched(flat_points, labels, flat_sigmas, keypoints, (size, size))

    def baseline():
        return torch.from_numpy(centernet_keypoint_heatmaps(points, radii, keypoints, (size, size))).to(device)

    def floor():  # allocated as the renderer allocates (on CPU numpy's huge pages: ~4x cheaper page faults)
        return lazy_zeros(math.prod(shape), device).fill_(0.0).view(shape)

    agreement = targets_agreement(points, radii, baseline().cpu().numpy())
    ours_ms, baseline_ms = median_ms(ours, settings.repeats, device), median_ms(baseline, settings.repeats, device)
    floor_ms = median_ms(floor, settings.repeats, device)
    met = ours_ms * 20 <= baseline_ms and ours_ms <= 3 * floor_ms
    return _result("targets", device, "time_ratio <= 0.05 and ours_ms <= 3 x floor_ms", ours_ms, baseline_ms,
                   peak_bytes(ours, device), peak_bytes(baseline, device), met,
                   floor_ms=floor_ms, floor_ratio=ours_ms / floor_ms, baseline_to_floor=baseline_ms / floor_ms,
                   **agreement, shape=list(shape), points=batch * people * keypoints,
                   agreement="CenterNet truncates each point to a pixel and fills its whole square window; ours "
                             "is centred on the sub-pixel point and cut at 3 sigma. The differences are measured "
                             "with ours drawn at CenterNet's pixels")


# ----------------------------------------------------------------------------------------------
# 2. the distance-aware focal loss: CenterNet's form in plain PyTorch
# ----------------------------------------------------------------------------------------------
def bench_focal_loss(settings: Settings) -> dict:
    """Goal: forward + backward in <= 0.25x the time and peak memory, value equal to 1e-5 relative."""
    shape = (2, 4, 32, 32) if settings.quick else (16, 80, 128, 128)
    device = settings.device
    logits, target = focal_inputs(shape, device)
    ours_loss = DistanceAwareFocalLoss()

    def run(loss_fn):
        def step():
            leaf = logits.detach().requires_grad_()
            loss = loss_fn(leaf, target)
            loss.backward()
            return loss.detach(), leaf.grad
        return step

    ours, baseline = run(ours_loss), run(centernet_focal_loss)
    ours_value, ours_grad = ours()
    base_value, base_grad = baseline()
    relative = abs(float(ours_value) - float(base_value)) / abs(float(base_value))
    grad_difference = float((ours_grad - base_grad).abs().max() / base_grad.abs().max())
    del ours_grad, base_grad
    ours_ms, baseline_ms = median_ms(ours, settings.repeats, device), median_ms(baseline, settings.repeats, device)
    ours_bytes, baseline_bytes = peak_bytes(ours, device), peak_bytes(baseline, device)
    met = ours_ms <= 0.25 * baseline_ms and ours_bytes <= 0.25 * baseline_bytes and relative <= 1e-5
    return _result("focal_loss", device, "time_ratio <= 0.25, memory_ratio <= 0.25, value to 1e-5 relative",
                   ours_ms, baseline_ms, ours_bytes, baseline_bytes, met, value_relative_difference=relative,
                   grad_max_difference_relative=grad_difference, shape=list(shape))


# ----------------------------------------------------------------------------------------------
# 3. decoding: HRNet's and mmpose's per-keypoint loops
# ----------------------------------------------------------------------------------------------
def _bench_decode(settings: Settings, refine: str) -> dict:
    shape = (2, 68, 32, 32) if settings.quick else (32, 68, 64, 64)
    device = settings.device
    maps, _ = decode_inputs(shape)
    maps_numpy, maps_device = maps.numpy(), maps.to(device)
    if refine == "quarter":
        def ours():
            return decode_keypoints(maps_device, refine="quarter").coordinates

        def baseline():
            return hrnet_quarter_decode(maps_numpy)
        name, note = "decode_quarter", ("peaks >= 3 px from the border, where HRNet's condition and ours both "
                                        "apply the offset: coordinates should agree exactly (HRNet also refuses "
                                        "it in column and row 1)")
    else:
        def ours():
            return decode_keypoints(maps_device, refine="dark", blur_sigma=2.0).coordinates

        def baseline():
            return mmpose_dark_decode(maps_numpy, blur_kernel=11)
        name, note = "decode_dark", ("blur differs (zero vs replicate padding, 11 vs 13 taps) and so does the "
                                     "curvature stencil; without blur both are exact on clean Gaussians at least "
                                     "2 px from the border, nearer to which mmpose gives no offset")

    def floor():  # one read of every map: any decoder's minimum work
        return maps_device.reshape(shape[0] * shape[1], -1).amax(dim=1)

    difference = float((ours().cpu() - torch.from_numpy(baseline())).abs().max())
    ours_ms, baseline_ms = median_ms(ours, settings.repeats, device), median_ms(baseline, settings.repeats, device)
    floor_ms = median_ms(floor, settings.repeats, device)
    return _result(name, device, "time_ratio <= 0.02", ours_ms, baseline_ms, peak_bytes(ours, device),
                   peak_bytes(baseline, device), ours_ms * 50 <= baseline_ms, max_coordinate_difference=difference,
                   agreement=note, floor_ms=floor_ms, baseline_to_floor=baseline_ms / floor_ms, shape=list(shape))


def bench_decode_quarter(settings: Settings) -> dict:
    """Goal: >= 50x faster than HRNet's loop; same coordinates."""
    return _bench_decode(settings, "quarter")


def bench_decode_dark(settings: Settings) -> dict:
    """Goal: >= 50x faster than mmpose's DARK loop."""
    return _bench_decode(settings, "dark")


# ----------------------------------------------------------------------------------------------
# 4. the data pipeline against a training step; 5. a training step with each loss
# ----------------------------------------------------------------------------------------------
def _training_parts(device: torch.device, loss_fn):
    """The default config's model, optimiser and a ``step(batch)`` through the trainer's own
    :func:`heatmapnet.engine.training_step` (bf16 autocast on CUDA, gradient clipping, AdamW)."""
    from .build import build_model, build_scheme
    from .config import load_config
    from .engine import training_step

    config = load_config(None)
    model = build_model(config, build_scheme(config)).to(device).train()
    criterion = HeatmapCriterion(loss_fn)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
    amp = bool(config.train.amp) and device.type == "cuda"

    def step(batch):
        training_step(model, criterion, optimizer, batch, config.train.clip_grad, amp)

    return config, step


def _synthetic_batch(config, batch: int, device: torch.device):
    width, height = config.data.input_size
    stride = OUTPUT_STRIDE
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, height, width, generator=generator)
    points = torch.rand(batch, 68, 2, generator=generator) * torch.tensor([width / stride - 1, height / stride - 1])
    heatmaps = render_heatmaps_batched(points, torch.arange(68).expand(batch, -1), 1.0, 68,
                                       (height // stride, width // stride))
    return {"image": images.to(device), "heatmaps": heatmaps.to(device),
            "heatmap_weights": torch.ones(batch, 68, device=device)}


def _real_split():
    """The ytf68 training split (else lsp_extended) under the data root, or None (also when an
    installed copy has no data root: ``$HEATMAPNET_DATA`` unset)."""
    from .config import ConfigError, data_root

    try:
        root = data_root()
    except ConfigError:
        return None
    if (root / "ytf68" / "train").is_dir():
        return "ytf68"
    if (root / "lsp_extended" / "joints.mat").is_file():
        return "lsp"
    return None


def bench_data_loader(settings: Settings) -> dict:
    """Goal: the loader (JPEG decode, affine, targets; 2 workers) delivers at least the images/s
    of a training step of the default model at batch 32, i.e. the loader is not the bottleneck."""
    from torch.utils.data import DataLoader

    from .build import build_codec, build_dataset, build_loss, build_scheme, read_records
    from .config import load_config
    from .data.pipelines import collate_samples

    device = settings.device
    goal = "time_ratio <= 1 (loader images/s >= training images/s)"
    config_name = _real_split()
    if config_name is None:
        return _result("data_loader", device, goal, skipped="no ytf68 or lsp_extended under the data root "
                                                            "(set HEATMAPNET_DATA)")
    batch, batches = (4, 2) if settings.quick else (32, 8)
    config = load_config(config_name)
    scheme = build_scheme(config)
    codec = build_codec(config, scheme)
    records = read_records(config, "train")
    dataset = build_dataset(config, records, codec, scheme, train=True)
    order = np.random.default_rng(0).permutation(len(dataset))[: batch * (batches + 1)].reshape(-1, batch)
    loader = DataLoader(dataset, batch_sampler=order.tolist(), num_workers=2, collate_fn=collate_samples)
    iterator = iter(loader)
    next(iterator)  # worker start-up is not throughput
    start = time.perf_counter()
    for _ in iterator:
        pass
    loader_s_per_image = (time.perf_counter() - start) / (batch * batches)

    default, step = _training_parts(device, build_loss(load_config(None)))
    synthetic = _synthetic_batch(default, batch, device)
    timing_threads = torch.get_num_threads()
    torch.set_num_threads(settings.train_threads or timing_threads)
    try:
        step_ms = median_ms(lambda: step(synthetic), max(1, settings.repeats // 2), device)
    finally:
        torch.set_num_threads(timing_threads)
    train_s_per_image = step_ms / 1e3 / batch
    return _result("data_loader", device, goal, loader_s_per_image * 1e3 * batch, step_ms, None, None,
                   loader_s_per_image <= train_s_per_image, dataset=config_name, batch=batch, workers=2,
                   loader_images_per_s=1 / loader_s_per_image, train_images_per_s=1 / train_s_per_image,
                   note="ours_ms = loader time per batch, baseline_ms = training step per batch")


def bench_train_step(settings: Settings) -> dict:
    """A full training step of the default model at batch 32 with our focal loss against the same
    step with CenterNet's: throughput and peak memory. CUDA only: on CPU a step of the default model
    is measured by the data_loader case, and this comparison would take minutes."""
    device = settings.device
    goal = "time_ratio < 1 and memory_ratio < 1 (informational)"
    if device.type != "cuda":
        return _result("train_step", device, goal, skipped="runs on CUDA only (use --device cuda on a GPU machine)")
    batch = 8 if settings.quick else 32
    config, ours = _training_parts(device, DistanceAwareFocalLoss())
    _, baseline = _training_parts(device, lambda output, target, weights: centernet_focal_loss(output, target))
    synthetic = _synthetic_batch(config, batch, device)
    ours_ms = median_ms(lambda: ours(synthetic), settings.repeats, device)
    baseline_ms = median_ms(lambda: baseline(synthetic), settings.repeats, device)
    ours_bytes = peak_bytes(lambda: ours(synthetic), device)
    baseline_bytes = peak_bytes(lambda: baseline(synthetic), device)
    return _result("train_step", device, goal, ours_ms, baseline_ms, ours_bytes, baseline_bytes,
                   ours_ms < baseline_ms and ours_bytes < baseline_bytes, batch=batch,
                   images_per_s=batch / ours_ms * 1e3, baseline_images_per_s=batch / baseline_ms * 1e3)


# ----------------------------------------------------------------------------------------------
# 6. bottom-up people: CenterNet's multi_pose_decode and its per-image post-processing
# ----------------------------------------------------------------------------------------------
def centernet_heads(maps: torch.Tensor, layout) -> dict:
    """heatmapnet's bottom-up channels as CenterNet's multi-pose heads (the same maps, sliced)."""
    return {"heat": maps[:, layout.centre], "wh": maps[:, layout.size], "kps": maps[:, layout.joint_offsets],
            "reg": maps[:, layout.centre_offset], "hm_hp": maps[:, layout.joints],
            "hp_offset": maps[:, layout.joint_offset]}


def centernet_people(maps: torch.Tensor, layout, max_people: int, centre, scale) -> list:
    """CenterNet's multi-pose path from activated maps to people: ``multi_pose_decode``, the
    detections to numpy, ``multi_pose_post_process`` (its loop over images and points), and per
    image the detector's conversion of the rows to a float32 array (B arrays (K, 2J + 5): box
    x1, y1, x2, y2, score, joints, image pixels)."""
    heads = centernet_heads(maps, layout)
    dets = centernet_multi_pose_decode(heads["heat"], heads["wh"], heads["kps"], reg=heads["reg"],
                                       hm_hp=heads["hm_hp"], hp_offset=heads["hp_offset"], K=max_people)
    dets = dets.detach().cpu().numpy()
    batch, height, width = dets.shape[0], maps.shape[2], maps.shape[3]
    results = centernet_multi_pose_post_process(dets.copy(), [centre] * batch, [scale] * batch, height, width)
    columns = dets.shape[2] - 1
    return [np.array(result[1], dtype=np.float32).reshape(-1, columns) for result in results]


def _max_or_zero(values: torch.Tensor) -> float:
    return float(values.max()) if values.numel() else 0.0


def people_agreement(codec, maps: torch.Tensor, people, rows: list) -> dict:
    """Ours (:class:`~heatmapnet.bottomup.People`) against CenterNet's rows on the same maps.

    People: the same candidates in the same order, with the same scores and boxes. Joints: each
    decoder keeps the regressed joint (read at the centre pixel) or snaps it to a joint-heatmap
    peak of its type. CenterNet takes, among its top-K peaks of the type (K = people) scoring
    above 0.1, the nearest one wherever it lies, and keeps the regressed joint if that peak is
    outside the box or farther than 0.3 x the box's longer side. Ours snaps to the nearest peak
    that passes every test (inside the box, score >= 0.1, and its own distance gate where the
    codec has one), among ``joint_candidates`` peaks per type. So they may differ by design, and
    only, where ours snapped and (a) its peak is not among CenterNet's top-K peaks above 0.1,
    (b) a nearer peak above 0.1 lies outside the box (CenterNet takes it and refuses it), (c) the
    peak's score is exactly 0.1, or (d) the peak is beyond CenterNet's 0.3 x longer side. These
    are decided from CenterNet's own peaks, regressed joints and boxes, not from the difference
    of the two outputs; ``max_joint_difference_px`` (input pixels) is over every other joint and
    must be float rounding, and ``joints_differing_unexplained`` counts differing joints outside
    (a)-(d)."""
    layout = codec.layout
    batch, count = people.scores.shape
    joints = layout.num_keypoints
    maps = maps.cpu()
    heads = centernet_heads(maps, layout)
    theirs = torch.from_numpy(np.stack(rows)).double()  # (B, T, 2J + 5) input px
    ours_scores, ours_boxes = people.scores.cpu().double(), people.boxes.cpu().double()
    theirs_boxes = torch.cat([theirs[..., 0:2], theirs[..., 2:4] - theirs[..., 0:2]], dim=-1)
    score_difference = (ours_scores - theirs[..., 4]).abs()
    box_difference = (ours_boxes - theirs_boxes).abs().amax(dim=-1)
    matched = (score_difference <= 1e-6) & (box_difference <= 1e-3)

    # CenterNet's own intermediate values, in heatmap pixels
    plain = centernet_multi_pose_decode(heads["heat"], heads["wh"], heads["kps"], reg=heads["reg"], K=count)
    regressed = plain[..., 5:5 + 2 * joints].reshape(batch, count, joints, 2).double()
    boxes = plain[..., :4].double()
    limit = 0.3 * torch.maximum(boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1])  # (B, T)
    theirs_heat = codec.input_to_heatmap(theirs[..., 5:].reshape(batch, count, joints, 2))
    theirs_snapped = (theirs_heat - regressed).norm(dim=-1) > 1e-4
    peak_scores, peak_index, peak_ys, peak_xs = centernet_topk_channel(centernet_nms(heads["hm_hp"]), count)
    offsets = centernet_transpose_and_gather_feat(heads["hp_offset"], peak_index.view(batch, -1))
    offsets = offsets.view(batch, joints, count, 2)
    peaks = torch.stack([peak_xs + offsets[..., 0], peak_ys + offsets[..., 1]], dim=-1).double()[:, None]
    above = (peak_scores > CENTERNET_HP_THRESH)[:, None]  # (B, 1, J, P)
    low, high = boxes[:, :, None, None, :2], boxes[:, :, None, None, 2:]
    inside = ((peaks >= low) & (peaks <= high)).all(dim=-1)  # (B, T, J, P)
    peak_distance = (peaks - regressed[..., None, :]).norm(dim=-1)

    ours_heat = codec.input_to_heatmap(people.keypoints.cpu().double())
    ours_snapped = people.snapped.cpu()
    ours_distance = (ours_heat - regressed).norm(dim=-1)  # (B, T, J)
    in_their_list = (above & ((peaks - ours_heat[..., None, :]).norm(dim=-1) <= 1e-4)).any(dim=-1)
    at_threshold = ours_snapped & (people.keypoint_scores.cpu() <= CENTERNET_HP_THRESH)
    beyond_top_k = ours_snapped & ~at_threshold & ~in_their_list
    nearer_outside = (above & ~inside & (peak_distance <= ours_distance[..., None] + 1e-6)).any(dim=-1)
    hidden = ours_snapped & ~at_threshold & ~beyond_top_k & nearer_outside
    beyond_limit = ours_snapped & ~at_threshold & ~beyond_top_k & ~hidden & (ours_distance > limit[..., None] + 1e-6)
    by_design = at_threshold | beyond_top_k | hidden | beyond_limit

    difference = (people.keypoints.cpu().double() - theirs[..., 5:].reshape(batch, count, joints, 2)).norm(dim=-1)
    differing = difference > 1e-3
    confident = (ours_scores >= 0.5)[..., None].expand_as(by_design)
    return {"people": batch * count, "people_matched": int(matched.sum()),
            "max_score_difference": float(score_difference.max()),
            "max_box_difference_px": float(box_difference.max()),
            "joints": int(by_design.numel()), "joints_snapped_ours": int(ours_snapped.sum()),
            "joints_snapped_centernet": int(theirs_snapped.sum()),
            "max_joint_difference_px": _max_or_zero(difference[~by_design]),
            "joints_differing": int(differing.sum()),
            "joints_differing_by_design_peak_beyond_centernet_top_k": int((differing & beyond_top_k).sum()),
            "joints_differing_by_design_nearer_peak_outside_box": int((differing & hidden).sum()),
            "joints_differing_by_design_distance_limit": int((differing & beyond_limit).sum()),
            "joints_differing_by_design_score_at_threshold": int((differing & at_threshold).sum()),
            "joints_differing_unexplained": int((differing & ~by_design).sum()),
            "joints_differing_of_people_above_0.5": int((differing & confident).sum()),
            "joints_of_people_above_0.5": int(confident.sum()),
            "max_joint_difference_px_by_design": _max_or_zero(difference[by_design & differing]),
            "ours_joint_candidates": int(min(max(count, getattr(codec, "joint_candidates", count)),
                                             maps.shape[2] * maps.shape[3])),
            "ours_snap_distance": getattr(codec, "snap_distance", None)}


def bench_decode_people(settings: Settings) -> dict:
    """Bottom-up people from activated maps: ours (:meth:`BottomUpCodec.decode`, no Python loop)
    beside CenterNet's ``multi_pose_decode`` plus its per-image post-processing, in the same run,
    and beside the floor, one read of all the maps. Goal: within 2x of the floor."""
    batch, joints, size, max_people = (2, 17, 32, 16) if settings.quick else (32, 17, 128, 32)
    people = (2, 6) if settings.quick else (4, 16)
    device = settings.device
    maps, codec = people_maps(batch, joints, size, people)
    layout = codec.layout
    maps_device = maps.to(device)
    input_size = codec.input_size
    # CenterNet's c = (W / 2, H / 2) and s = max(W, H) invert its own encoding (x_out = x_in / 4);
    # these maps are heatmapnet's (x_heat = (x_in - 1.5) / 4): the centre moves by (s - 1) / 2
    centre = np.array([input_size[0] / 2.0, input_size[1] / 2.0], np.float32) + (codec.stride - 1) / 2.0
    scale = float(max(input_size))

    def ours():
        return codec.decode(maps_device, max_people=max_people)

    def baseline():
        return centernet_people(maps_device, layout, max_people, centre, scale)

    def floor():  # one read of every map: any decoder's minimum work
        return maps_device.amax()

    agreement = people_agreement(codec, maps, ours(), baseline())
    ours_ms, baseline_ms = median_ms(ours, settings.repeats, device), median_ms(baseline, settings.repeats, device)
    floor_ms = median_ms(floor, settings.repeats, device)
    return _result("decode_people", device, "ours_ms <= 2 x floor_ms", ours_ms, baseline_ms,
                   peak_bytes(ours, device), peak_bytes(baseline, device), ours_ms <= 2 * floor_ms,
                   floor_ms=floor_ms, floor_ratio=ours_ms / floor_ms, baseline_to_floor=baseline_ms / floor_ms,
                   **agreement, shape=list(maps.shape), max_people=max_people, people_per_image=list(people),
                   agreement_note=(
                       "Same candidates (centre NMS and top-K) with the same scores and boxes. Joints: where both "
                       "keep the regressed joint or snap to the same peak they agree (max_joint_difference_px: "
                       "float rounding). CenterNet takes the nearest peak > 0.1 among its top-K of the type "
                       "wherever it lies and then refuses it (keeping the regressed joint) if it is outside the box "
                       "or farther than 0.3 x the box's longer side; ours takes the nearest peak that passes every "
                       "test (inside, >= 0.1, its own distance gate if any: ours_snap_distance) among "
                       "ours_joint_candidates per type. So by design ours may snap where CenterNet does not, or to "
                       "another peak, as counted in joints_differing_by_design_*: a nearer peak outside the box "
                       "hides an inside one from CenterNet; ours' peak is beyond CenterNet's top-K; a score of "
                       "exactly 0.1; a peak beyond 0.3 x the longer side. CenterNet does not clamp sizes (a negative "
                       "one admits no peak; ours clamps to 0) and returns no joint scores. Its post-processing is "
                       "given c = (W/2 + 1.5, H/2 + 1.5), s = max(W, H), heatmapnet's pixel-centre convention; its "
                       "own c would put every point 1.5 px up-left."))


# ----------------------------------------------------------------------------------------------
# 7. inference: the exported default model in onnxruntime against PyTorch eager
# ----------------------------------------------------------------------------------------------
def bench_inference(settings: Settings) -> dict:
    """Images/s of the default model (untrained: speed does not depend on the weights) exported by
    ``heatmapnet export`` and run by onnxruntime, against the same model in PyTorch eager, at batch
    1 and 32 (``--quick``: 1 and 4), on the same normalised crops. Both do the whole job from a
    network input to keypoints: onnxruntime runs the exported graph (network, activation, argmax
    and DARK in the graph), PyTorch ``model.heatmaps`` and ``codec.decode`` (DARK by the C kernel).
    onnxruntime gets as many intra-op threads as torch has (``--threads``). CPU only. ours =
    onnxruntime, baseline = PyTorch eager; the time ratio is at the larger batch."""
    import tempfile

    from omegaconf import OmegaConf

    from .build import build_codec, build_model, build_scheme
    from .checkpoint import save_checkpoint
    from .config import load_config

    device = settings.device
    goal = "informational: onnxruntime time / PyTorch eager time (< 1: onnxruntime faster)"
    if device.type != "cpu":
        return _result("inference", device, goal, skipped="runs on CPU only (onnxruntime's CPU provider)")
    try:
        import onnxruntime as ort

        from .export import export_checkpoint
    except ImportError:
        return _result("inference", device, goal, skipped="onnxruntime is not installed (pip install 'heatmapnet[export]')")
    config = load_config(None)
    scheme = build_scheme(config)
    codec = build_codec(config, scheme)
    torch.manual_seed(0)
    model = build_model(config, scheme).eval()
    threads = torch.get_num_threads()
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(folder) / "default.pt"
        save_checkpoint(checkpoint, config=OmegaConf.to_container(config), scheme=scheme, model=model.state_dict(),
                        step=0)
        exported = export_checkpoint(checkpoint, Path(folder) / "default.onnx", dynamic_batch=True, check_images=0)
        session = ort.InferenceSession(exported.path, options, providers=["CPUExecutionProvider"])

    def eager(images):
        with torch.no_grad():
            return codec.decode(model.heatmaps(images))

    width, height = codec.input_size
    batches = (1, 4) if settings.quick else (1, 32)
    generator = torch.Generator().manual_seed(0)
    rows = {}
    for batch in batches:
        images = torch.randn(batch, 3, height, width, generator=generator)
        array = images.numpy()
        onnx_ms = median_ms(lambda: session.run(["keypoints", "scores"], {"images": array}), settings.repeats, device)
        eager_ms = median_ms(lambda: eager(images), settings.repeats, device)
        rows[batch] = {"onnxruntime_images_per_s": batch / onnx_ms * 1e3, "pytorch_images_per_s": batch / eager_ms * 1e3,
                       "speedup": eager_ms / onnx_ms, "onnxruntime_ms": onnx_ms, "pytorch_ms": eager_ms}
    largest = rows[batches[-1]]
    return _result("inference", device, goal, largest["onnxruntime_ms"], largest["pytorch_ms"], None, None,
                   largest["onnxruntime_ms"] <= largest["pytorch_ms"], batches=list(batches), threads=threads,
                   model=f"{config.model.backbone} {config.model.head}, {width}x{height}, {scheme.num_keypoints} "
                         f"keypoints, refine {codec.refine}",
                   **{f"{key}_batch{batch}": value for batch, row in rows.items() for key, value in row.items()})


# ----------------------------------------------------------------------------------------------
# 8. predict over a folder: memory that does not grow with the number of images
# ----------------------------------------------------------------------------------------------
#: how many bytes more a folder of the larger count may hold at its peak than one of the smaller:
#: the list of its paths (about 100 bytes an image) and the allocator's slack, never the images
#: or their json entries
STREAM_GROWTH_BOUND = 2 * 2 ** 20


def _max_rss_bytes() -> Optional[int]:
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


def _image_folder(folder: Path, count: int, size: int) -> Path:
    """``count`` PNGs of ``size`` x ``size`` smooth noise (eight different ones, repeated)."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(0)
    encoded = []
    for _ in range(8):
        coarse = generator.integers(0, 256, (max(1, size // 8), max(1, size // 8), 3), dtype=np.uint8)
        encoded.append(cv2.imencode(".png", cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC))[1])
    for index in range(count):
        (folder / f"{index:06d}.png").write_bytes(encoded[index % len(encoded)].tobytes())
    return folder


def folder_peaks(predictor, counts=(200, 2000), size: int = 32, batch_size: int = 16, folder=None) -> dict:
    """``predict`` (:func:`heatmapnet.deploy.runner.predict_images`, json to a file) with
    ``predictor`` over a folder of each of ``counts`` tiny images (``size`` px), after a warm-up
    run: count -> its peak Python heap above the level before it (``tracemalloc``: every Python
    object and numpy's array buffers; not onnxruntime's or OpenCV's own buffers, which a batch
    reuses), how much the process's peak resident size grew during it (None where the platform
    has no counter; the first run's growth includes what onnxruntime allocates once), seconds
    and images predicted. A streaming predict holds one batch at a time: its peak does not grow
    with the count (see :data:`STREAM_GROWTH_BOUND`). ``folder``: where the temporary images go.

    The folder's paths are made into :class:`~pathlib.Path` objects, kept alive, before each
    measured run: pathlib interns every part of a path, and a new file name grows the
    interpreter's table of interned strings, whose resize (the whole table, megabytes in a process
    that imported torch) would otherwise land in whichever run crosses its threshold."""
    import tempfile

    from .deploy.runner import predict_images
    from .deploy.sources import image_paths

    rows = {}
    with tempfile.TemporaryDirectory(dir=folder) as root:
        root = Path(root)
        warm = _image_folder(root / "warm-up", batch_size, size)
        predict_images(predictor, [str(warm)], out=str(root / "warm-up.json"), batch_size=batch_size)
        for count in counts:
            images = _image_folder(root / f"images-{count}", count, size)
            interned = [Path(path) for path in image_paths([str(images)])]  # noqa: F841 - see the docstring
            gc.collect()
            rss = _max_rss_bytes()
            tracemalloc.start()
            try:
                started = time.perf_counter()
                predicted = predict_images(predictor, [str(images)], out=str(root / f"{count}.json"),
                                           batch_size=batch_size)
                seconds = time.perf_counter() - started
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            grown = None if rss is None else _max_rss_bytes() - rss
            rows[count] = {"peak_bytes": int(peak), "max_rss_growth_bytes": grown, "seconds": seconds,
                           "images": predicted}
    return rows


def bench_predict_stream(settings: Settings) -> dict:
    """Peak memory of ``predict`` over a folder of 1,000 and of 10,000 32 x 32 images (``--quick``:
    200 and 2,000) with a small exported model in onnxruntime (1 thread; the model does not change
    what the runner holds), by :func:`folder_peaks`. ours = the larger folder, baseline = the
    smaller: the memory ratio is how much the peak grows with 10 x the images; met when it grows
    by at most :data:`STREAM_GROWTH_BOUND`."""
    import tempfile

    from omegaconf import OmegaConf

    from .build import build_model, build_scheme
    from .checkpoint import save_checkpoint
    from .config import load_config

    device = settings.device
    goal = f"peak memory grows by <= {STREAM_GROWTH_BOUND / 2 ** 20:g} MiB with 10x the images"
    if device.type != "cpu":
        return _result("predict_stream", device, goal, skipped="runs on CPU only (onnxruntime's CPU provider)")
    try:
        from .deploy.runtime import OnnxPredictor
        from .export import export_checkpoint
    except ImportError:
        return _result("predict_stream", device, goal,
                       skipped="onnxruntime is not installed (pip install 'heatmapnet[export]')")
    config = load_config("synthetic_faces", ["model.backbone=mobilenetv3_small_050", "model.head_channels=16",
                                             "data.input_size=[64,64]"])
    scheme = build_scheme(config)
    torch.manual_seed(0)
    model = build_model(config, scheme).eval()
    counts = (200, 2000) if settings.quick else (1000, 10000)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(folder) / "small.pt"
        save_checkpoint(checkpoint, config=OmegaConf.to_container(config), scheme=scheme, model=model.state_dict(),
                        step=0)
        exported = export_checkpoint(checkpoint, Path(folder) / "small.onnx", dynamic_batch=True, check_images=0)
        rows = folder_peaks(OnnxPredictor(exported.path, threads=1), counts, folder=folder)
    small, large = rows[counts[0]], rows[counts[1]]
    growth = large["peak_bytes"] - small["peak_bytes"]
    return _result("predict_stream", device, goal, None, None, large["peak_bytes"], small["peak_bytes"],
                   growth <= STREAM_GROWTH_BOUND, counts=list(counts), image_size=32, peak_growth_bytes=growth,
                   model=f"{config.model.backbone}, 64x64, {scheme.num_keypoints} keypoints",
                   **{f"{key}_{count}": value for count, row in rows.items() for key, value in row.items()})


BENCHMARKS = {"targets": bench_targets, "focal_loss": bench_focal_loss, "decode_quarter": bench_decode_quarter,
              "decode_dark": bench_decode_dark, "data_loader": bench_data_loader, "train_step": bench_train_step,
              "decode_people": bench_decode_people, "inference": bench_inference,
              "predict_stream": bench_predict_stream}


# ----------------------------------------------------------------------------------------------
# running and reporting
# ----------------------------------------------------------------------------------------------
def run_benchmarks(cases=CASES, devices=("cpu",), repeats: int = 5, quick: bool = False, train_threads: int = 0,
                   log: Optional[Callable[[str], None]] = None) -> list:
    """Run ``cases`` on each of ``devices``; one result dict per case and device. A device that is
    not available yields one skipped entry with the reason. ``train_threads``: see Settings."""
    results = []
    for device_name in devices:
        if device_name == "cuda" and not torch.cuda.is_available():
            results.append(_result("cuda", torch.device("cuda"), "the same table on CUDA",
                                   skipped="torch.cuda.is_available() is False on this machine"))
            continue
        settings = Settings(torch.device(device_name), repeats, quick, train_threads)
        for name in cases:
            if log:
                log(f"running {name} on {device_name} ...")
            results.append(BENCHMARKS[name](settings))
    return results


def _format(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.0f}"


def format_table(results: list) -> str:
    """The results as a fixed-width table, skipped cases with their reason."""
    header = f"{'case':<16}{'device':<8}{'ours ms':>10}{'base ms':>10}{'time':>9}{'memory':>9}  {'met':<5}goal"
    lines = [header, "-" * len(header)]
    for r in results:
        if r["skipped"]:
            lines.append(f"{r['name']:<16}{r['device']:<8}skipped: {r['skipped']}")
            continue
        lines.append(f"{r['name']:<16}{r['device']:<8}{_format(r['ours_ms']):>10}{_format(r['baseline_ms']):>10}"
                     f"{_format(r['time_ratio']):>9}{_format(r['memory_ratio']):>9}  {_format(r['met']):<5}"
                     f"{r['goal']}")
    return "\n".join(lines)


def run_bench(args: argparse.Namespace) -> int:
    """The ``heatmapnet bench`` command: run, print the table, optionally write the json."""
    if args.device == "cuda" and not torch.cuda.is_available():
        print("heatmapnet bench: --device cuda, but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    devices = (args.device,) if args.device else ("cpu", "cuda")
    machine_threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        results = run_benchmarks(args.cases, devices, args.repeats, args.quick, machine_threads,
                                 log=lambda line: print(line, file=sys.stderr, flush=True))
    finally:
        torch.set_num_threads(machine_threads)
    print(format_table(results))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"cases": results, "torch": torch.__version__, "threads": args.threads or machine_threads,
                   "repeats": args.repeats, "quick": args.quick}
        path.write_text(json.dumps(payload, indent=2), encoding="utf-8")
        print(f"results written to {path}")
    return 0


def add_bench_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``heatmapnet bench`` on an ``add_subparsers()`` object; returns its parser."""
    bench = subparsers.add_parser(
        "bench", help="time our targets, loss and decoding beside reference-style baselines",
        description="Each case runs our implementation beside a baseline written in the reference code's "
                    "style in this process (median of at least --repeats runs after a warm-up) and reports "
                    "the time and peak-memory ratios, ours / baseline, against the case's goal.")
    bench.add_argument("--json", metavar="PATH", help="also write the results as json")
    bench.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES), metavar="NAME",
                       help=f"cases to run (default: all of {', '.join(CASES)})")
    bench.add_argument("--repeats", type=int, default=5, help="timed runs per implementation, at least (median)")
    bench.add_argument("--quick", action="store_true", help="small sizes: a smoke run of every code path")
    bench.add_argument("--device", choices=("cpu", "cuda"),
                       help="run on one device (default: cpu, then cuda where available)")
    bench.add_argument("--threads", type=int, default=1,
                       help="torch CPU threads while timing (default 1, as the numpy baselines; 0 keeps torch's)")
    bench.set_defaults(handler=run_bench)
    return bench


def main(argv=None) -> int:
    """``tools/benchmark.py`` and ``python -m heatmapnet.bench``: the same as ``heatmapnet bench``."""
    parser = argparse.ArgumentParser(prog="benchmark")
    add_bench_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
