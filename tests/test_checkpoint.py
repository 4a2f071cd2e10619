"""Checkpoints: plain-data files that round-trip exactly, and read errors that name the file."""
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from heatmapnet.checkpoint import (CHECKPOINT_VERSION, Checkpoint, CheckpointError, load_checkpoint,
                                   restore_rng_states, rng_states, save_checkpoint, upgrade_checkpoint)
from heatmapnet.cli import main
from heatmapnet.config import load_config
from heatmapnet.engine import Trainer
from heatmapnet.metadata import load_scheme, scheme_from_dict

REPO = Path(__file__).resolve().parent.parent
SCHEME_FILES = sorted((REPO / "datasets").glob("*.yaml"))
MTFL5_NAMES = ["left_eye", "right_eye", "nose", "left_mouth_corner", "right_mouth_corner"]
CONFIG = {"data": {"scheme": "mtfl5", "input_size": [64, 64], "train": {"subset": None}},
          "model": {"backbone": "mobilenetv3_small_050", "head_channels": 16}, "train": {"steps": 7, "lr": 0.01}}


def _tiny_training():
    """A conv + batch-norm net after two Adam steps (optimizer moments, a stepped scheduler and an
    integer ``num_batches_tracked`` buffer to carry)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    for _ in range(2):
        net(torch.randn(2, 3, 6, 6)).square().mean().backward()
        optimizer.step()
        scheduler.step()
    return net, optimizer, scheduler


def _save_tiny(path, scheme=None, **extra):
    net, optimizer, scheduler = _tiny_training()
    save_checkpoint(path, config=CONFIG, scheme=scheme or load_scheme("mtfl5"), model=net.state_dict(), step=7,
                    best={"name": "nme", "value": 0.125, "step": 5},
                    training={"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                              "rng": rng_states()}, **extra)
    return net, optimizer, scheduler


def _assert_same_tensors(a: dict, b: dict):
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


def _write_format_1(path, net, optimizer, scheduler, scheme):
    """A checkpoint as the first wave's Trainer wrote it: torch.save of a dict holding numpy's
    and Python's RNG states as they come, and the KeypointScheme object itself."""
    torch.save({"config": CONFIG, "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "step": 7, "best": {"name": "nme", "value": 0.5, "step": 7},
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
                "scheme": scheme}, path)


# ----------------------------------------------------------------------------------------------
# round trips
# ----------------------------------------------------------------------------------------------
def test_a_checkpoint_round_trips_config_scheme_weights_step_best_and_training_state(tmp_path):
    path = tmp_path / "c.pt"
    net, optimizer, scheduler = _save_tiny(path)
    loaded = load_checkpoint(path)
    assert isinstance(loaded, Checkpoint) and loaded.path == str(path)
    assert loaded.config == CONFIG
    assert loaded.scheme == load_scheme("mtfl5") and loaded.num_keypoints == 5
    assert list(loaded.scheme.keypoint_names) == MTFL5_NAMES
    assert loaded.step == 7 and isinstance(loaded.step, int)
    assert loaded.best == {"name": "nme", "value": 0.125, "step": 5}
    _assert_same_tensors(loaded.model, net.state_dict())
    assert loaded.model["1.num_batches_tracked"].item() == 2  # two training forward passes
    assert set(loaded.training) == {"optimizer", "scheduler", "rng"}
    saved_optimizer = optimizer.state_dict()
    assert loaded.training["optimizer"]["param_groups"] == saved_optimizer["param_groups"]
    for index, state in saved_optimizer["state"].items():
        _assert_same_tensors(loaded.training["optimizer"]["state"][index], state)
    assert loaded.training["scheduler"] == scheduler.state_dict()
    assert loaded.training["scheduler"]["last_epoch"] == 2 and loaded.training["scheduler"]["_last_lr"] == [0.0025]
    # the weights load into a fresh net of the same shape
    fresh = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    fresh.load_state_dict(loaded.model)
    # written atomically: no temporary file is left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_exported_weights_hold_no_training_state_and_no_best(tmp_path):
    save_checkpoint(tmp_path / "w.pt", config=CONFIG, scheme=load_scheme("mtfl5"), model={"w": torch.ones(2)}, step=3)
    loaded = load_checkpoint(tmp_path / "w.pt")
    assert loaded.training == {} and loaded.best is None and loaded.step == 3


def test_saving_over_a_checkpoint_replaces_it(tmp_path):
    path = tmp_path / "last.pt"
    for step in (1, 2):
        save_checkpoint(path, config=CONFIG, scheme=load_scheme("mtfl5"), model={"w": torch.full((2,), step)},
                        step=step)
    loaded = load_checkpoint(path)
    assert loaded.step == 2 and loaded.model["w"].tolist() == [2, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_the_file_is_plain_data_that_torch_loads_with_weights_only(tmp_path):
    _save_tiny(tmp_path / "c.pt")
    raw = torch.load(tmp_path / "c.pt", map_location="cpu", weights_only=True)
    assert set(raw) == {"format", "version", "config", "scheme", "model", "step", "best", "optimizer", "scheduler",
                        "rng"}
    assert raw["format"] == "heatmapnet-checkpoint" and raw["version"] == CHECKPOINT_VERSION == 2
    assert isinstance(raw["scheme"], dict) and raw["scheme"]["name"] == "mtfl5"
    assert raw["scheme"]["keypoints"] == MTFL5_NAMES
    assert raw["scheme"]["flip_pairs"] == [["left_eye", "right_eye"], ["left_mouth_corner", "right_mouth_corner"]]
    assert raw["config"] == CONFIG and raw["step"] == 7


def test_the_saved_random_states_restore_every_generator(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # odd numbers of normal draws leave a cached second value in both generators
    np.random.standard_normal()
    save_checkpoint(tmp_path / "c.pt", config=CONFIG, scheme=load_scheme("mtfl5"), model={}, step=0,
                    training={"rng": rng_states()})
    expected = (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), np.random.standard_normal(),
                torch.rand(3).tolist())
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    restore_rng_states(load_checkpoint(tmp_path / "c.pt").training["rng"])
    again = (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), np.random.standard_normal(),
             torch.rand(3).tolist())
    assert again == expected


@pytest.mark.parametrize("scheme_file", SCHEME_FILES, ids=lambda p: p.stem)
def test_every_shipped_scheme_round_trips_as_a_dict(scheme_file, tmp_path):
    scheme = load_scheme(scheme_file)
    assert scheme.num_keypoints == int(re.search(r"\d+$", scheme_file.stem).group())  # coco17: 17, ...
    assert scheme_from_dict(scheme.to_dict()) == scheme
    save_checkpoint(tmp_path / "c.pt", config=CONFIG, scheme=scheme, model={}, step=0)
    loaded = load_checkpoint(tmp_path / "c.pt").scheme
    assert loaded == scheme
    # fields equality leaves out, compared one by one
    assert loaded.notes == scheme.notes
    assert list(loaded.flip_permutation) == list(scheme.flip_permutation)
    np.testing.assert_array_equal(loaded.oks_sigmas, scheme.oks_sigmas)
    assert loaded.oks_sigmas.dtype == np.float64


# ----------------------------------------------------------------------------------------------
# files that are not readable checkpoints: each error names the file
# ----------------------------------------------------------------------------------------------
def _error(path) -> str:
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, ValueError)
    return str(caught.value)


def test_a_missing_file(tmp_path):
    assert _error(tmp_path / "nope.pt") == f"checkpoint not found: {tmp_path / 'nope.pt'}"
    assert "checkpoint not found" in _error(tmp_path)  # a folder is not a checkpoint file either


def test_an_empty_file(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    assert _error(tmp_path / "empty.pt") == f"{tmp_path / 'empty.pt'}: empty file, not a heatmapnet checkpoint"


@pytest.mark.parametrize("keep", ["first byte", "a quarter", "half", "all but the last byte"])
def test_a_truncated_checkpoint(tmp_path, keep):
    _save_tiny(tmp_path / "whole.pt")
    data = (tmp_path / "whole.pt").read_bytes()
    size = {"first byte": 1, "a quarter": len(data) // 4, "half": len(data) // 2,
            "all but the last byte": len(data) - 1}[keep]
    (tmp_path / "cut.pt").write_bytes(data[:size])
    assert "cannot be read as a checkpoint (truncated" in _error(tmp_path / "cut.pt")


def test_a_file_that_is_not_a_torch_file(tmp_path):
    (tmp_path / "notes.pt").write_text("hello world " * 20)
    assert "cannot be read as a checkpoint (truncated, corrupt or not a torch file)" in _error(tmp_path / "notes.pt")
    (tmp_path / "noise.pt").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    assert "cannot be read as a checkpoint (truncated, corrupt or not a torch file)" in _error(tmp_path / "noise.pt")


@pytest.mark.parametrize("content", [torch.zeros(3), {"model": {"w": torch.ones(2)}, "step": 3},
                                     {"format": "something-else", "version": 2}, [1, 2, 3]],
                         ids=["bare-tensor", "dict-without-marker", "other-format", "list"])
def test_a_torch_file_that_is_not_a_heatmapnet_checkpoint(tmp_path, content):
    torch.save(content, tmp_path / "other.pt")
    assert "not a heatmapnet checkpoint (no 'heatmapnet-checkpoint' marker)" in _error(tmp_path / "other.pt")


def test_a_torch_file_holding_arbitrary_objects_is_not_unpickled(tmp_path):
    torch.save({"format": "heatmapnet-checkpoint", "payload": Path("/etc")}, tmp_path / "objects.pt")
    assert "not a heatmapnet checkpoint (it holds objects other than plain data)" in _error(tmp_path / "objects.pt")


@pytest.mark.parametrize("version", [3, 0, None, "2"])
def test_a_checkpoint_of_another_version(tmp_path, version):
    _save_tiny(tmp_path / "c.pt")
    raw = torch.load(tmp_path / "c.pt", weights_only=True)
    raw["version"] = version
    torch.save(raw, tmp_path / "other.pt")
    assert f"checkpoint version {version}, this heatmapnet reads version 2" in _error(tmp_path / "other.pt")


def test_a_checkpoint_missing_fields_or_with_a_broken_scheme(tmp_path):
    torch.save({"format": "heatmapnet-checkpoint", "version": 2, "config": {}, "scheme": {}}, tmp_path / "bare.pt")
    assert "checkpoint lacks ['model', 'step']" in _error(tmp_path / "bare.pt")
    scheme = load_scheme("mtfl5").to_dict()
    scheme["flip_pairs"] = [["left_eye", "third_eye"]]
    torch.save({"format": "heatmapnet-checkpoint", "version": 2, "config": {}, "scheme": scheme, "model": {},
                "step": 0}, tmp_path / "scheme.pt")
    assert "unknown keypoint name 'third_eye'" in _error(tmp_path / "scheme.pt")


def test_a_format_1_checkpoint_is_refused_unopened_and_upgrade_converts_it(tmp_path):
    net, optimizer, scheduler = _tiny_training()
    scheme = load_scheme("mtfl5")
    _write_format_1(tmp_path / "old.pt", net, optimizer, scheduler, scheme)
    message = _error(tmp_path / "old.pt")
    assert "a checkpoint of an older heatmapnet (format 1, with a pickled keypoint scheme)" in message
    assert "upgrade_checkpoint" in message

    upgraded = upgrade_checkpoint(tmp_path / "old.pt", tmp_path / "new.pt")
    reread = load_checkpoint(tmp_path / "new.pt")
    for checkpoint in (upgraded, reread):
        assert checkpoint.path == str(tmp_path / "new.pt")
        assert checkpoint.config == CONFIG and checkpoint.scheme == scheme and checkpoint.step == 7
        assert checkpoint.best == {"name": "nme", "value": 0.5, "step": 7}
        _assert_same_tensors(checkpoint.model, net.state_dict())
        assert checkpoint.training["scheduler"] == scheduler.state_dict()
        for index, state in optimizer.state_dict()["state"].items():
            _assert_same_tensors(checkpoint.training["optimizer"]["state"][index], state)
    assert torch.load(tmp_path / "new.pt", weights_only=True)["version"] == 2
    # the random state written at save time comes back: the next draws of all three generators
    old_rng = torch.load(tmp_path / "old.pt", weights_only=False)["rng"]
    torch.set_rng_state(old_rng["torch"])
    np.random.set_state(old_rng["numpy"])
    random.setstate(old_rng["python"])
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    torch.manual_seed(123), np.random.seed(123), random.seed(123)
    restore_rng_states(reread.training["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert [random.random() for _ in range(3)] == expected[2]
    with pytest.raises(CheckpointError, match="older heatmapnet"):
        load_checkpoint(tmp_path / "old.pt")  # the old file is left as it was


def test_upgrade_refuses_a_file_that_is_not_a_format_1_checkpoint(tmp_path):
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(CheckpointError, match=re.escape(f"{tmp_path / 'tensor.pt'}: not a heatmapnet checkpoint "
                                                        "of format 1")):
        upgrade_checkpoint(tmp_path / "tensor.pt", tmp_path / "new.pt")
    assert not (tmp_path / "new.pt").exists()


# ----------------------------------------------------------------------------------------------
# a checkpoint against a config
# ----------------------------------------------------------------------------------------------
def test_check_fits_refuses_another_keypoint_layout(tmp_path):
    _save_tiny(tmp_path / "five.pt")
    checkpoint = load_checkpoint(tmp_path / "five.pt")
    checkpoint.check_fits(load_scheme("mtfl5"))  # its own layout fits
    with pytest.raises(CheckpointError, match=re.escape(
            f"{tmp_path / 'five.pt'}: made for 5 keypoints (mtfl5), this config has 68 (ibug68)")):
        checkpoint.check_fits(load_scheme("ibug68"))
    # as many keypoints, other names: still another layout
    renamed = load_scheme("mtfl5").to_dict()
    renamed.update(name="five_points", keypoints=["a", "b", "c", "d", "e"], flip_pairs=[], skeleton=[],
                   nme_normalisation={})
    renamed.pop("pupils", None)
    with pytest.raises(CheckpointError, match=r"five\.pt: its keypoints \(mtfl5\) are not this config's "
                                              r"\(five_points\): names differ"):
        checkpoint.check_fits(scheme_from_dict(renamed))


@pytest.fixture
def mtfl(shared_data, monkeypatch):
    monkeypatch.setenv("HEATMAPNET_DATA", str(shared_data))
    return shared_data


@pytest.fixture
def tiny(tiny_run):
    """The shared tiny run (conftest.TINY_RUN) on the first 16 / 8 MTFL faces, 2 steps."""
    return tiny_run(**{"data.train.subset": "0:16", "data.val.subset": "0:8", "train.steps": 2})


def test_trainer_refuses_to_resume_a_checkpoint_of_another_scheme(mtfl, tmp_path, tiny):
    trainer = Trainer(load_config("mtfl5", tiny), tmp_path / "run")
    before = {name: value.clone() for name, value in trainer.model.state_dict().items()}
    _save_tiny(tmp_path / "faces68.pt", scheme=load_scheme("ibug68"))
    with pytest.raises(CheckpointError, match=re.escape(
            f"{tmp_path / 'faces68.pt'}: made for 68 keypoints (ibug68), this config has 5 (mtfl5)")):
        trainer.resume(tmp_path / "faces68.pt")
    assert trainer.step == 0 and trainer.best is None
    _assert_same_tensors(trainer.model.state_dict(), before)
    # weights without training state can be evaluated but not resumed
    save_checkpoint(tmp_path / "weights.pt", config=CONFIG, scheme=load_scheme("mtfl5"), model=before, step=2)
    with pytest.raises(ValueError, match=r"weights\.pt: holds no training state \['optimizer', 'scheduler', "
                                         r"'rng'\]; it can be evaluated but not resumed"):
        trainer.resume(tmp_path / "weights.pt")
    assert trainer.step == 0


# ----------------------------------------------------------------------------------------------
# the command line: a bad checkpoint is exit status 2 and one line naming it
# ----------------------------------------------------------------------------------------------
def _corrupt(tmp_path) -> Path:
    _save_tiny(tmp_path / "whole.pt")
    data = (tmp_path / "whole.pt").read_bytes()
    (tmp_path / "corrupt.pt").write_bytes(data[:len(data) // 2])
    return tmp_path / "corrupt.pt"


def _one_line(capsys, command: str, path: Path) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"heatmapnet {command}: ") and str(path) in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    return lines[0]


def test_eval_on_a_corrupt_checkpoint_exits_2_naming_it(tmp_path, capsys, monkeypatch, tiny):
    monkeypatch.setenv("HEATMAPNET_DATA", str(tmp_path / "data"))  # the config needs a data root; nothing is read
    corrupt = _corrupt(tmp_path)
    assert main(["eval", "mtfl5", "--checkpoint", str(corrupt), "--out", str(tmp_path / "eval"), "--set", *tiny]) == 2
    assert "truncated or corrupt" in _one_line(capsys, "eval", corrupt)
    assert not (tmp_path / "eval").exists()
    missing = tmp_path / "missing.pt"
    assert main(["eval", "mtfl5", "--checkpoint", str(missing), "--out", str(tmp_path / "eval"), "--set", *tiny]) == 2
    assert "checkpoint not found" in _one_line(capsys, "eval", missing)


def test_predict_on_a_corrupt_or_old_checkpoint_exits_2_naming_it(tmp_path, capsys):
    image = tmp_path / "face.jpg"
    image.write_bytes(b"")  # never read: the checkpoint is refused first
    corrupt = _corrupt(tmp_path)
    assert main(["predict", str(image), "--checkpoint", str(corrupt)]) == 2
    assert "truncated or corrupt" in _one_line(capsys, "predict", corrupt)
    _write_format_1(tmp_path / "old.pt", *_tiny_training(), load_scheme("mtfl5"))
    assert main(["predict", str(image), "--checkpoint", str(tmp_path / "old.pt")]) == 2
    assert "older heatmapnet (format 1" in _one_line(capsys, "predict", tmp_path / "old.pt")
