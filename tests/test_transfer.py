"""model.init_from (heatmapnet.transfer): tensors by name and shape, classifier rows by keypoint name."""
import hashlib

import pytest
import torch

from heatmapnet.checkpoint import CheckpointError, save_checkpoint
from heatmapnet.cli import main
from heatmapnet.metadata import KeypointScheme
from heatmapnet.models import ModelConfig, HeatmapModel
from heatmapnet.modes import MODES
from heatmapnet.transfer import init_from_checkpoint, names_in_source

BACKBONE = "mobilenetv3_small_050"


def scheme(names, pairs=(), sides="person", name="s"):
    return KeypointScheme(name=name, keypoint_names=tuple(names), flip_pairs=tuple(pairs),
                          oks_sigmas=[0.05] * len(names), sides=sides)


def model(outputs, channels=16, heatmaps=None):
    torch.manual_seed(1)
    return HeatmapModel(ModelConfig(backbone=BACKBONE, head_channels=channels, num_keypoints=outputs,
                                    output_activation="sigmoid", heatmap_channels=heatmaps))


def source_checkpoint(path, names, pairs=(), sides="person", mode="topdown", channels=16):
    """A checkpoint whose classifier row i holds the value i + 1 everywhere (bias too), and every
    other tensor a value no fresh model has (7.5)."""
    torch.manual_seed(0)
    net = model(len(names), channels)
    state = net.state_dict()
    for key, tensor in state.items():
        if tensor.is_floating_point():
            tensor.fill_(7.5)
    for row in range(len(names)):
        state["head.classifier.weight"][row] = row + 1.0
        state["head.classifier.bias"][row] = row + 1.0
    save_checkpoint(path, config={"data": {"mode": mode}, "model": {"backbone": BACKBONE}},
                    scheme=scheme(names, pairs, sides), model=state, step=10)
    return path


def test_a_reordered_and_renamed_scheme_gets_exactly_its_rows(tmp_path):
    path = source_checkpoint(tmp_path / "src.pt", ["a", "b", "c"])
    target = model(3)
    fresh = target.state_dict()["head.classifier.weight"][1].clone()
    report = init_from_checkpoint(target, MODES.get("topdown")(), scheme(["c", "x", "a"]), path)
    weight, bias = target.head.classifier.weight, target.head.classifier.bias
    assert torch.all(weight[0] == 3.0) and bias[0] == 3.0  # c was row 2 of the source
    assert torch.all(weight[2] == 1.0) and bias[2] == 1.0  # a was row 0
    assert torch.equal(weight[1], fresh)  # x is new: its fresh filter stays
    assert bias[1] != 1.0 and bias[1] != 2.0 and bias[1] != 3.0
    assert all(torch.all(t == 7.5) for k, t in target.state_dict().items()
               if t.is_floating_point() and not k.startswith("head.classifier"))
    assert (report.rows_mapped, report.rows_total, report.skipped) == (2, 3, ())
    assert report.loaded_tensors == report.total_tensors
    in_channels = weight.shape[1]
    classifier_parameters = 3 * in_channels + 3
    assert report.loaded_parameters == report.total_parameters - classifier_parameters + 2 * (in_channels + 1)


def test_schemes_that_mean_other_sides_map_through_the_flip_pairs(tmp_path):
    names = ["left_eye", "right_eye", "nose"]
    path = source_checkpoint(tmp_path / "person.pt", names, [(0, 1)], sides="person")
    target = model(3)
    report = init_from_checkpoint(target, MODES.get("topdown")(), scheme(names, [(0, 1)], sides="image"), path)
    rows = target.head.classifier.bias.tolist()
    assert rows == [2.0, 1.0, 3.0]  # the image-left eye is the person's right eye of a frontal face
    assert report.rows_renamed == 2 and "through flip pairs" in report.summary()
    assert names_in_source(scheme(names, [(0, 1)]), scheme(names, [(0, 1)])) == tuple(names)


def test_a_shape_mismatch_is_skipped_and_reported(tmp_path):
    path = source_checkpoint(tmp_path / "wide.pt", ["a", "b"], channels=32)
    target = model(2, channels=16)
    before = {k: t.clone() for k, t in target.state_dict().items()}
    report = init_from_checkpoint(target, MODES.get("topdown")(), scheme(["a", "b"]), path)
    skipped = {skip.name for skip in report.skipped}
    assert "head.smooth.0.weight" in skipped and "head.classifier.weight" in skipped
    assert all(skip.reason == "shape" for skip in report.skipped)
    assert all(torch.equal(target.state_dict()[k], before[k]) for k in skipped)
    assert torch.all(target.backbone.conv_stem.weight == 7.5)
    line = report.summary()
    assert "\n" not in line and f"skipped {len(skipped)} ({len(skipped)} shape)" in line
    assert "(checkpoint (32," in line


def test_a_top_down_checkpoint_seeds_a_bottom_up_models_joint_heatmaps(tmp_path):
    path = source_checkpoint(tmp_path / "topdown.pt", ["hip", "knee"])
    mode = MODES.get("bottomup")()
    layout_joints = slice(5 + 2 * 2, 5 + 3 * 2)  # centre 1, centre offset 2, size 2, joint offsets 2K
    target = model(7 + 3 * 2, heatmaps=(0, 9, 10))
    fresh = target.head.classifier.bias.clone()
    report = init_from_checkpoint(target, mode, scheme(["knee", "hip"]), path)
    bias = target.head.classifier.bias
    assert bias[layout_joints].tolist() == [2.0, 1.0]
    others = [i for i in range(13) if i not in (9, 10)]
    assert torch.equal(bias[others], fresh[others])
    assert (report.rows_mapped, report.rows_total) == (2, 13)


def test_a_bottom_up_checkpoint_gives_a_top_down_model_its_joint_rows(tmp_path):
    torch.manual_seed(0)
    source = model(13, heatmaps=(0, 9, 10))
    state = source.state_dict()
    state["head.classifier.bias"].copy_(torch.arange(13.0))
    save_checkpoint(tmp_path / "bu.pt", config={"data": {"mode": "bottomup"}}, scheme=scheme(["hip", "knee"]),
                    model=state, step=1)
    target = model(2)
    init_from_checkpoint(target, MODES.get("topdown")(), scheme(["knee", "hip"]), tmp_path / "bu.pt")
    assert target.head.classifier.bias.tolist() == [10.0, 9.0]


@pytest.mark.parametrize("content, expected", [
    (None, "checkpoint not found: {path}"),
    (b"", "{path}: empty file, not a heatmapnet checkpoint"),
    (b"PK\x03\x04 truncated", "{path}: cannot be read as a checkpoint"),
])
def test_a_missing_or_corrupt_file_is_one_line_naming_it(tmp_path, content, expected):
    path = tmp_path / "weights.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=None) as error:
        init_from_checkpoint(model(2), MODES.get("topdown")(), scheme(["a", "b"]), path)
    assert str(error.value).startswith(expected.format(path=path)) and "\n" not in str(error.value)


def test_a_foreign_torch_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "timm_weights.pth"
    torch.save(model(2).state_dict(), path)  # a plain state dict: not a heatmapnet checkpoint
    with pytest.raises(CheckpointError, match=f"{path}: not a heatmapnet checkpoint"):
        init_from_checkpoint(model(2), MODES.get("topdown")(), scheme(["a", "b"]), path)


def test_another_content_than_the_recorded_hash_is_refused(tmp_path):
    path = source_checkpoint(tmp_path / "src.pt", ["a", "b"])
    with pytest.raises(CheckpointError, match="init_from_sha256 is 00ff"):
        init_from_checkpoint(model(2), MODES.get("topdown")(), scheme(["a", "b"]), path, expected_sha256="00ff")


# ---------------------------------------------------------------------------------------------
# through the train command
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tiny_run):
    """The shared tiny run (conftest.TINY_RUN), 2 steps and no checkpoint but the last."""
    assert f"model.backbone={BACKBONE}" in tiny_run()
    return tiny_run(**{"train.steps": 2, "train.checkpoint_every": 1000})


@pytest.fixture(scope="module")
def source_run(tmp_path_factory, tiny):
    out = tmp_path_factory.mktemp("source") / "run"
    assert main(["train", "synthetic_faces", "--out", str(out), "--set", *tiny]) == 0
    return out


def test_train_prints_the_summary_before_step_one_and_records_the_hash(source_run, tmp_path, capsys, tiny):
    out = tmp_path / "run"
    source = source_run / "last.pt"
    assert main(["train", "synthetic_faces", "--out", str(out), "--set", *tiny, f"model.init_from={source}"]) == 0
    printed = capsys.readouterr()
    lines = (printed.out + printed.err).splitlines()
    summary = next(i for i, line in enumerate(lines) if line.startswith(f"model.init_from {source}"))
    assert "classifier rows 68 of 68 mapped by keypoint name; nothing skipped" in lines[summary]
    assert summary < next(i for i, line in enumerate(lines) if "step" in line and "train" in line)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    written = (out / "config.yaml").read_text()
    assert f"init_from: {source}" in written and f"init_from_sha256: {digest}" in written


def test_resume_and_init_from_together_are_one_line(source_run, tmp_path, capsys, tiny):
    source = source_run / "last.pt"
    code = main(["train", "synthetic_faces", "--out", str(tmp_path / "r"), "--resume", str(source),
                 "--set", *tiny, f"model.init_from={source}"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in error
    assert error.startswith(f"heatmapnet train: --resume {source} continues a run") and "use one of the two" in error


def test_a_run_started_from_a_checkpoint_resumes_with_its_own_config(source_run, tmp_path, tiny, tiny_run):
    out = tmp_path / "run"
    init = [f"model.init_from={source_run / 'last.pt'}"]
    assert main(["train", "synthetic_faces", "--out", str(out), "--set", *tiny, *init]) == 0
    longer = tiny_run(**{"train.steps": 3, "train.checkpoint_every": 1000})
    assert main(["train", "synthetic_faces", "--out", str(out), "--resume", str(out / "last.pt"),
                 "--set", *longer, *init]) == 0


def test_a_missing_init_from_is_found_before_training(tmp_path, capsys, tiny):
    missing = tmp_path / "nope.pt"
    code = main(["train", "synthetic_faces", "--out", str(tmp_path / "r"), "--set", *tiny,
                 f"model.init_from={missing}"])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"heatmapnet train: model.init_from: checkpoint not found: {missing}"
    assert not (tmp_path / "r" / "metrics.jsonl").exists()
