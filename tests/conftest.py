"""Shared fixtures. ``shared_data``: the real keypoint data (see /work/shared/data/README.md);
``cpu_path``: the C kernels or, with them turned off, the PyTorch paths."""
import os
import shutil
from pathlib import Path

import pytest

from heatmapnet import kernels

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config):
    """Under pytest-xdist (``-n N``) each worker is one of N processes sharing the cores: one torch
    thread each, so they do not oversubscribe the machine."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch
        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to the real data: ``$HEATMAPNET_DATA``, else ``<repo>/../shared/data``; skips if absent."""
    env = os.environ.get("HEATMAPNET_DATA")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip("real data not found: set HEATMAPNET_DATA or place it at ../shared/data")
    return path


@pytest.fixture
def c_kernels():
    """The C kernels (heatmapnet._kernels). They must be built wherever a C compiler is found
    (``pip install -e .`` builds them); only a machine without one skips."""
    if kernels.built() is None:
        if shutil.which("cc") is None and shutil.which("gcc") is None:
            pytest.skip("no C compiler: `pip install -e .` could not build heatmapnet._kernels")
        pytest.fail("heatmapnet._kernels is not built although a C compiler is here: run `pip install -e .`")
    return kernels.built()


@pytest.fixture(params=["c-kernel", "pytorch"])
def cpu_path(request):
    """Runs a test through the C kernels or, with them turned off (:func:`heatmapnet.kernels.use_kernels`),
    through the PyTorch paths, which must give the same values."""
    if request.param == "c-kernel":
        request.getfixturevalue("c_kernels")
    with kernels.use_kernels(request.param == "c-kernel"):
        yield request.param


#: the settings of a run that takes seconds on one core (synthetic faces at 64 px, a small model)
TINY_RUN = {
    "data.train.num_samples": 32, "data.val.num_samples": 8, "data.input_size": "[64,64]",
    "data.num_workers": 0, "model.backbone": "mobilenetv3_small_050", "model.head_channels": 16,
    "train.steps": 4, "train.batch_size": 8, "train.lr": 0.01, "train.warmup_steps": 1,
    "train.eval_every": 1000, "train.checkpoint_every": 2, "train.log_every": 1, "eval.batch_size": 8,
    "train.threads": 1,
}


@pytest.fixture(scope="session")
def tiny_run():
    """``tiny_run(**changes)``: the dotted overrides of :data:`TINY_RUN` with ``changes`` applied
    (keys with dots spelled as ``train__steps`` or passed in a dict via ``tiny_run(**{...})``).
    Session-scoped (it holds no state), so module-scoped fixtures that train a run can use it."""
    def overrides(**changes):
        settings = dict(TINY_RUN)
        settings.update({key.replace("__", "."): value for key, value in changes.items()})
        return [f"{key}={value}" for key, value in settings.items()]

    return overrides


@pytest.fixture
def interrupted_run(monkeypatch):
    """``interrupted_run(trainer, steps)``: run ``trainer`` until ``steps`` steps are done, then
    raise KeyboardInterrupt in the next one (a process killed mid-run: the last checkpoint is what
    it left); ``Trainer.train_step`` is restored after."""
    from heatmapnet.engine import Trainer

    original = Trainer.train_step

    def run(trainer, steps: int) -> None:
        calls = []

        def dies_after(self, batch):
            calls.append(1)
            if len(calls) > steps:
                raise KeyboardInterrupt
            return original(self, batch)

        monkeypatch.setattr(Trainer, "train_step", dies_after)
        try:
            with pytest.raises(KeyboardInterrupt):
                trainer.run()
        finally:
            monkeypatch.setattr(Trainer, "train_step", original)

    return run


@pytest.fixture(scope="session")
def same_annotations():
    """``same_annotations(drawn, annotated)``: a generated set's record as drawn (pixels in ``image``)
    and as its ``annotations`` view gives it (no pixels) hold the same path, size, id and instances."""
    import numpy as np

    def check(drawn, annotated) -> None:
        assert annotated.image is None and drawn.image is not None
        assert (annotated.image_path, annotated.width, annotated.height, annotated.image_id) == (
            drawn.image_path, drawn.width, drawn.height, drawn.image_id)
        assert len(annotated.instances) == len(drawn.instances)
        for mine, theirs in zip(annotated.instances, drawn.instances):
            np.testing.assert_array_equal(mine.keypoints, theirs.keypoints)
            np.testing.assert_array_equal(mine.visible, theirs.visible)
            np.testing.assert_array_equal(mine.bbox, theirs.bbox)
            assert mine.extra == theirs.extra

    return check
