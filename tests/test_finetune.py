"""Fine-tuning controls: train.freeze (bit-identical, eval-mode norms), train.lr_mult, train.unfreeze_step."""
import pytest
import torch

from heatmapnet.checkpoint import load_checkpoint
from heatmapnet.cli import main
from heatmapnet.config import load_config
from heatmapnet.errors import UserError
from heatmapnet.engine import Trainer

CONFIG = "synthetic_faces"


def part(state, prefix):
    return {k: v.clone() for k, v in state.items() if k.startswith(prefix + ".")}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_frozen_backbone_stays_bit_identical_and_its_norms_in_eval_mode(tmp_path, tiny_run):
    trainer = Trainer(load_config(CONFIG, tiny_run(**{"train.freeze": "[backbone]"})), tmp_path / "run")
    start = trainer.model.state_dict()
    backbone, head = part(start, "backbone"), part(start, "head")
    assert any("running_mean" in k for k in backbone)  # batch-norm statistics are part of what must hold
    modes = []
    original = trainer.criterion.forward

    def spy(*args, **kwargs):
        modes.append([m.training for m in trainer.model.backbone.modules()] + [trainer.model.head.training])
        return original(*args, **kwargs)

    trainer.criterion.forward = spy
    trainer.run()
    end = trainer.model.state_dict()
    assert same(part(end, "backbone"), backbone)
    assert not same(part(end, "head"), head)
    assert len(modes) == 4 and all(not any(m[:-1]) and m[-1] for m in modes)


def test_lr_mult_scales_its_groups_rate_at_every_step(tmp_path, tiny_run):
    trainer = Trainer(load_config(CONFIG, tiny_run(**{"train.lr_mult": "{backbone: 0.1, head.classifier: 3}"})),
                      tmp_path / "run")
    groups = {group["lr_mult"]: group for group in trainer.optimizer.param_groups}
    assert sorted(groups) == [0.1, 1.0, 3.0] and trainer.optimizer.param_groups[0]["lr_mult"] == 1.0
    ids = lambda params: {id(p) for p in params}  # noqa: E731
    assert ids(groups[0.1]["params"]) == ids(trainer.model.backbone.parameters())
    assert ids(groups[3.0]["params"]) == ids(trainer.model.head.classifier.parameters())
    rates = []
    for _ in range(3):
        trainer.optimizer.step()  # no gradients yet: changes nothing, keeps the scheduler's order
        trainer.scheduler.step()
        rates.append([group["lr"] for group in trainer.optimizer.param_groups])
    for rate in rates:
        assert rate[1] == pytest.approx(0.1 * rate[0], rel=1e-12) and rate[2] == pytest.approx(3 * rate[0], rel=1e-12)
    # warm-up 1 step, 4 steps: factor 1 after step 1, then 0.5 (1 + cos(pi / 3)) = 0.75 after step 2
    assert rates[0][0] == pytest.approx(0.01, rel=1e-12) and rates[1][0] == pytest.approx(0.0075, rel=1e-12)


def test_unfreeze_step_trains_the_part_from_that_step_on(tmp_path, tiny_run):
    out = tmp_path / "run"
    trainer = Trainer(load_config(CONFIG, tiny_run(**{"train.freeze": "[backbone]", "train.unfreeze_step": 2})), out)
    backbone = part(trainer.model.state_dict(), "backbone")
    trainer.run()
    # last.pt of step 2 (checkpoint_every 2) was replaced by step 4's; the run's copy at step 2 is checked below
    assert not same(part(trainer.model.state_dict(), "backbone"), backbone)
    assert all(p.requires_grad for p in trainer.model.parameters())

    halfway = Trainer(load_config(CONFIG, tiny_run(**{"train.freeze": "[backbone]", "train.unfreeze_step": 2,
                                                  "train.steps": 2})), tmp_path / "half")
    halfway.run()
    assert same(part(halfway.model.state_dict(), "backbone"), backbone)


def test_a_frozen_and_unfrozen_run_resumes_bit_identically(tmp_path, tiny_run):
    settings = {"train.freeze": "[backbone]", "train.unfreeze_step": 3, "train.lr_mult": "{backbone: 0.5}"}
    straight = tmp_path / "straight"
    assert main(["train", CONFIG, "--out", str(straight), "--set", *tiny_run(**settings)]) == 0
    resumed = tmp_path / "resumed"
    assert main(["train", CONFIG, "--out", str(resumed), "--set", *tiny_run(**settings, **{"train.steps": 2})]) == 0
    assert main(["train", CONFIG, "--out", str(resumed), "--resume", str(resumed / "last.pt"),
                 "--set", *tiny_run(**settings)]) == 0
    a, b = load_checkpoint(straight / "last.pt").model, load_checkpoint(resumed / "last.pt").model
    assert same(a, b)


@pytest.mark.parametrize("setting, message", [
    ("train.freeze=[backbon]", "train.freeze: 'backbon' names no parameter of the model"),
    ("train.lr_mult={heads: 0.1}", "train.lr_mult: 'heads' names no parameter of the model"),
    ("train.lr_mult={head: -1}", "train.lr_mult.head=-1.0: must be >= 0"),
    ("train.unfreeze_step=-1", "train.unfreeze_step=-1: must be >= 0"),
])
def test_a_bad_fine_tuning_setting_is_one_line_before_training(tmp_path, tiny_run, capsys, setting, message):
    code = main(["train", CONFIG, "--out", str(tmp_path / "r"), "--set", *tiny_run(), setting])
    error = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in error and message in error
    assert not (tmp_path / "r" / "metrics.jsonl").exists()


def test_a_prefix_matches_whole_module_names_only(tmp_path, tiny_run):
    with pytest.raises(UserError, match="'back' names no parameter"):
        Trainer(load_config(CONFIG, tiny_run(**{"train.freeze": "[back]"})), tmp_path / "run")
