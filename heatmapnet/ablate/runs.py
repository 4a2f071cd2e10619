"""One training run of an ablation, and its cache.

A :class:`RunSpec` says what to train (config, overrides, folder, the checkpoint whose weights it
starts from, the stop rule); :func:`execute` trains it through :class:`heatmapnet.engine.Trainer`
and returns a :class:`RunResult` (the final metric, the curve of metric against step, where and
why it stopped, the metric under each decoder, the final evaluation's confidence measures and
reliability bins). :class:`RunCache` keeps each result as a small
JSON file beside the run's folder, so that ``--resume`` skips the runs an interrupted ablation
finished: a cached result is used only when its fingerprint (the config file's text, the
overrides, the starting weights' run, the stop rule) is the spec's. An ablation stopped by SIGTERM
or SIGINT (:mod:`heatmapnet.stopping`) stops before its next run, or within the run under way,
which its ``--resume`` trains again; every finished run keeps its cached result. A result cached
before results kept confidence measures still loads; it gets them from its run's ``metrics.json``
where that is there (:func:`backfill_confidence`).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .budgets import StopRule

CACHE_VERSION = 1
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class RunSpec:
    config: str  # a config name or YAML path
    overrides: Tuple[str, ...]
    run_dir: Path
    init_from: Optional["RunResult"] = None  # the run whose final weights this one starts from
    stop: Optional[StopRule] = None  # None: train train.steps
    refine: bool = False  # also evaluate the final weights under every sub-pixel decoder

    def fingerprint(self) -> str:
        """A digest of everything that decides the run's result; the data root (machine-specific)
        is replaced by its name, so a cache moves between machines with the data."""
        from ..config import data_root, resolve_config_path

        text = resolve_config_path(self.config).read_text(encoding="utf-8")
        identity = {"version": CACHE_VERSION, "config": hashlib.sha1(text.encode()).hexdigest(),
                    "overrides": list(self.overrides), "stop": None if self.stop is None else asdict(self.stop),
                    "refine": self.refine,
                    # a continuation: the very run it starts from (retrained, the base is another run)
                    "init_from": None if self.init_from is None else [self.init_from.fingerprint,
                                                                       self.init_from.run_id]}
        return hashlib.sha1(json.dumps(identity).replace(str(data_root()), "${data_root:}").encode()).hexdigest()


@dataclass
class RunResult:
    """What a run produced. ``final`` is None and ``diverged`` holds the engine's message where the
    loss stopped being finite. ``stop_reason``: "steps" (trained its train.steps), "plateau" (the
    stop rule ended it) or "cap" (it reached train.steps before a plateau)."""

    fingerprint: str
    config: str
    overrides: List[str]
    metric: Optional[str] = None
    higher_is_better: Optional[bool] = None
    final: Optional[float] = None
    steps: List[int] = field(default_factory=list)  # the curve: evaluation steps ...
    values: List[float] = field(default_factory=list)  # ... and the metric at each
    stopped_at: int = 0  # steps trained
    stop_reason: str = "steps"
    refine: Dict[str, float] = field(default_factory=dict)  # decoder -> final metric, same weights
    wall_time_s: float = 0.0
    diverged: Optional[str] = None
    run_dir: str = ""
    run_id: str = ""  # unique per training, so that a run continued from this one is tied to these weights
    # the final evaluation's confidence measures (:func:`confidence_measures`; {}: none recorded, as
    # in a result cached before they were) and its reliability bins (None: not a top-down run)
    confidence: Dict[str, Optional[float]] = field(default_factory=dict)
    reliability: Optional[dict] = None

    def value_at(self, step: int) -> Optional[float]:
        """The metric evaluated at ``step`` (None: not evaluated there)."""
        return dict(zip(self.steps, self.values)).get(step)


# The final evaluation's confidence measures a result keeps: (metrics key, result key). Top-down
# faces and bodies: AUROC, Spearman, ECE of the keypoint scores and the hit rate they are measured
# at (heatmapnet.confidence); bottom-up people: OKS AP with the person scores ranking the people and
# with them ranked by chance.
CONFIDENCE_KEYS = (("confidence/auroc", "auroc"), ("confidence/spearman", "spearman"), ("confidence/ece", "ece"),
                   ("confidence/hit_rate", "hit_rate"), ("confidence/threshold", "threshold"),
                   ("confidence/num_keypoints", "num_keypoints"))
UNRANKED_KEY = "confidence/oks_ap_unranked"
RELIABILITY_KEY = "confidence/reliability"


def confidence_measures(metrics: dict) -> Dict[str, Optional[float]]:
    """The confidence measures of an evaluation's metrics: ``auroc``, ``spearman``, ``ece``,
    ``hit_rate``, ``threshold``, ``num_keypoints`` where the mode measures keypoint scores (None:
    undefined, e.g. AUROC when every keypoint hits), and ``oks_ap`` with ``oks_ap_unranked`` where
    it ranks people (bottom-up). {} for a mode with neither (multi-instance maps)."""
    measures = {name: metrics[key] for key, name in CONFIDENCE_KEYS if key in metrics}
    if UNRANKED_KEY in metrics and "oks_ap" in metrics:
        measures.update(oks_ap=metrics["oks_ap"], oks_ap_unranked=metrics[UNRANKED_KEY])
    return {name: None if value is None else float(value) for name, value in measures.items()}


def keep_confidence(result: "RunResult", metrics: dict) -> None:
    """Set ``result``'s confidence measures and reliability bins from a final evaluation's metrics."""
    result.confidence = confidence_measures(metrics)
    result.reliability = metrics.get(RELIABILITY_KEY)


def read_curve(run_dir, metric: str):
    """(steps, values) of ``metric`` from a run's ``metrics.jsonl`` (one row per evaluation)."""
    steps, values = [], []
    for line in (Path(run_dir) / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if f"val/{metric}" in record:
            steps.append(int(record["step"]))
            values.append(float(record[f"val/{metric}"]))
    return steps, values


def resolve_device(device: str) -> str:
    """``auto`` -> cuda where a GPU is present, else cpu; ``cuda`` without one is a ConfigError."""
    import torch

    from ..config import ConfigError

    if device not in DEVICES:
        raise ConfigError(f"--device {device!r}: choose one of {list(DEVICES)}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: torch finds no CUDA device here; use --device cpu or auto")
    return device


def build_trainer(config_name: str, overrides: Sequence[str], run_dir: Path, device: str):
    """A :class:`heatmapnet.engine.Trainer` for the config with ``overrides`` on ``device``, on the
    records its pre-flight passed (a bad image is one line before the run starts)."""
    import torch

    from ..config import load_config
    from ..distributed import DistInfo
    from ..engine import Trainer
    from ..preflight import checked_run_records

    config, dist = load_config(config_name, list(overrides)), DistInfo(device=torch.device(device))
    return Trainer(config, run_dir, dist, records=checked_run_records(config, run_dir, dist))


def init_weights(trainer, checkpoint_path: Path) -> None:
    """Start ``trainer``'s model from the weights in ``checkpoint_path`` (the whole model: backbone
    and head); the optimiser, schedule and step start afresh."""
    from ..checkpoint import load_checkpoint

    checkpoint = load_checkpoint(checkpoint_path, map_location="cpu")
    checkpoint.check_fits(trainer.data.scheme)
    checkpoint.load_weights(trainer.model)


class PlateauWatcher:
    """The engine's ``stop`` callback for a :class:`StopRule`: collects the primary metric of each
    periodic evaluation and answers True once the rule says the run has plateaued."""

    def __init__(self, rule: StopRule):
        self.rule, self.values, self.fired = rule, [], False

    def __call__(self, step: int, result: dict) -> bool:
        from ..evaluation import primary_metric

        _, value, higher = primary_metric(result)
        self.values.append(value)
        self.fired = self.rule.stop_index(self.values, higher) is not None
        return self.fired


def execute(spec: RunSpec, device: str) -> RunResult:
    """Train ``spec`` in a fresh ``spec.run_dir`` and return its result (a diverged run's too)."""
    from ..engine import NonFiniteLossError
    from ..evaluation import primary_metric

    if spec.run_dir.exists():
        shutil.rmtree(spec.run_dir)  # metrics.jsonl is appended to: a rerun must not extend an old curve
    started = time.perf_counter()
    trainer = build_trainer(spec.config, spec.overrides, spec.run_dir, device)
    if spec.init_from is not None:
        init_weights(trainer, Path(spec.init_from.run_dir) / "last.pt")
    result = RunResult(spec.fingerprint(), spec.config, list(spec.overrides), run_dir=str(spec.run_dir),
                       run_id=uuid.uuid4().hex)
    watcher = PlateauWatcher(spec.stop) if spec.stop is not None else None
    try:
        summary = trainer.run(stop=watcher)
    except NonFiniteLossError as error:
        result.diverged, result.stopped_at = str(error), trainer.step
        return result
    result.metric, result.final, result.higher_is_better = primary_metric(summary["final"])
    result.steps, result.values = read_curve(spec.run_dir, result.metric)
    result.stopped_at = int(summary["steps"])
    result.stop_reason = "steps" if watcher is None else "plateau" if watcher.fired else "cap"
    keep_confidence(result, summary["final"])
    if spec.refine:  # the same weights under each sub-pixel decoder
        for refine in trainer.codec.refinements:
            metrics = summary["final"] if refine == trainer.config.eval.refine \
                else trainer.evaluate(replace(trainer.codec, refine=refine))
            result.refine[refine] = primary_metric(metrics)[1]
    result.wall_time_s = round(time.perf_counter() - started, 1)
    return result


def restore_trainer(result: RunResult, device: str):
    """A trainer holding a finished run's final weights (read from its ``last.pt``), e.g. to draw
    its predictions; built from the run's config and overrides, so it works on a resumed cache."""
    trainer = build_trainer(result.config, result.overrides, Path(result.run_dir), device)
    init_weights(trainer, Path(result.run_dir) / "last.pt")
    trainer.model.eval()
    return trainer


def backfill_confidence(result: RunResult) -> None:
    """A result cached before results kept confidence measures: read them from its run's
    ``metrics.json`` (the engine's summary, whose ``final`` is the final evaluation), where there is
    one; else it keeps none and the report says so."""
    path = Path(result.run_dir) / "metrics.json"
    try:
        final = json.loads(path.read_text(encoding="utf-8"))["final"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    if isinstance(final, dict):
        keep_confidence(result, final)


class RunCache:
    """Finished runs as ``<run folder>.json`` beside the folder. With ``resume`` a run whose JSON
    matches its spec's fingerprint is not trained again (and counted in ``reused``); without it,
    every run trains and overwrites its JSON."""

    def __init__(self, resume: bool = False, log=print):
        self.resume, self.log, self.reused, self.trained = resume, log, 0, 0

    @staticmethod
    def path(spec: RunSpec) -> Path:
        return spec.run_dir.with_name(spec.run_dir.name + ".json")

    def load(self, spec: RunSpec) -> Optional[RunResult]:
        path = self.path(spec)
        if not (self.resume and path.is_file()):
            return None
        try:
            result = RunResult(**json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError):
            self.log(f"{path}: unreadable; training the run again")
            return None
        if result.fingerprint != spec.fingerprint():
            self.log(f"{path}: made with other settings; training the run again")
            return None
        if result.diverged is None and not (spec.run_dir / "last.pt").is_file():
            self.log(f"{spec.run_dir}: its last.pt is missing; training the run again")
            return None
        result.run_dir = str(spec.run_dir)  # the cache may have moved with its --out
        if not result.confidence and result.diverged is None:
            backfill_confidence(result)
        return result

    def save(self, spec: RunSpec, result: RunResult) -> None:
        path = self.path(spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(asdict(result), indent=1), encoding="utf-8")
        temporary.replace(path)  # an interruption leaves the old file or the new one, never half of one

    def run(self, spec: RunSpec, device: str) -> RunResult:
        """The cached result of ``spec`` where there is one, else :func:`execute` it and cache it.
        After SIGTERM or SIGINT, :class:`heatmapnet.stopping.StoppedBySignal` instead of a new run
        (or from within the run under way, which is not cached)."""
        from ..stopping import StoppedBySignal, requested, signal_name

        cached = self.load(spec)
        if cached is not None:
            self.reused += 1
            return cached
        finished = f"the {self.trained + self.reused} runs finished so far are cached for --resume."
        signum = requested()
        if signum:
            raise StoppedBySignal(signum, f"stopped by {signal_name(signum)} before training {spec.run_dir}; "
                                          f"{finished}")
        try:
            result = execute(spec, device)
        except StoppedBySignal as stopped:
            raise StoppedBySignal(stopped.signum, f"stopped by {signal_name(stopped.signum)} at step {stopped.step} "
                                                  f"of {spec.run_dir}, which --resume trains again; {finished}") \
                from None
        self.trained += 1
        self.save(spec, result)
        return result
