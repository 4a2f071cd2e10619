"""Models: any timm backbone by name (tags included), heads at stride 4, the model's own output
activation and prior bias, local pretrained weights."""
import math
import socket

import pytest
import timm
import torch

from omegaconf import OmegaConf

from heatmapnet.config import ConfigError, config_from_dict, load_config
from heatmapnet.models import HEADS, HeatmapModel, ModelConfig, build_model


@pytest.mark.parametrize("head", sorted(HEADS))
def test_heads_predict_one_stride_4_map_per_keypoint(head):
    model = build_model(backbone="mobilenetv3_small_100", head=head, num_keypoints=5)
    assert model(torch.randn(2, 3, 96, 64)).shape == (2, 5, 24, 16)


def test_sigmoid_heads_start_at_the_retinanet_prior_and_identity_heads_at_zero():
    focal = build_model(backbone="mobilenetv3_small_100", num_keypoints=3, output_activation="sigmoid")
    mse = build_model(backbone="mobilenetv3_small_100", num_keypoints=3, output_activation="identity")
    # the prior bias -ln((1 - 0.1) / 0.1) = -ln 9 = -2.197225; classifier weights ~ N(0, 0.001^2)
    assert focal.head.classifier.bias.tolist() == pytest.approx([-math.log(9.0)] * 3, abs=1e-6)
    assert torch.all(mse.head.classifier.bias == 0)
    with torch.no_grad():
        maps = focal.eval().heatmaps(torch.randn(1, 3, 64, 64))
    assert maps.mean().item() == pytest.approx(0.1, abs=0.01)


def test_the_default_output_activation_is_identity():
    model = build_model(backbone="mobilenetv3_small_100", num_keypoints=2)
    assert model.config.output_activation == "identity"
    assert torch.all(model.head.classifier.bias == 0)


def test_heatmaps_apply_the_models_activation_to_its_raw_output():
    images = torch.randn(2, 3, 64, 64)
    for activation in ("sigmoid", "identity"):
        model = build_model(backbone="mobilenetv3_small_100", num_keypoints=2, output_activation=activation).eval()
        with torch.no_grad():
            raw, maps = model(images), model.heatmaps(images)
        expected = torch.sigmoid(raw) if activation == "sigmoid" else raw
        torch.testing.assert_close(maps, expected, rtol=0, atol=0)
    # activate returns float32 whatever the raw output's dtype: sigmoid(0) = 0.5, identity keeps 0.25
    logits = torch.tensor([0.0, 0.25], dtype=torch.bfloat16)
    sigmoid_model = build_model(backbone="mobilenetv3_small_100", num_keypoints=1, output_activation="sigmoid")
    identity_model = build_model(backbone="mobilenetv3_small_100", num_keypoints=1)
    assert sigmoid_model.activate(logits).dtype == torch.float32
    assert sigmoid_model.activate(logits)[0].item() == 0.5
    assert identity_model.activate(logits).tolist() == [0.0, 0.25]


def test_unknown_output_activation_is_an_error():
    with pytest.raises(ValueError, match=r"unknown output_activation 'softmax'; choose one of \('sigmoid', "
                                         r"'identity'\)"):
        HeatmapModel(ModelConfig(backbone="mobilenetv3_small_100", output_activation="softmax"))


def test_the_removed_sigmoid_prior_setting_is_rejected_by_name():
    """A config (or a stored checkpoint's) that still sets model.sigmoid_prior is refused with the
    config's own message naming the key, not silently ignored: the prior is fixed (SIGMOID_PRIOR)."""
    with pytest.raises(ConfigError, match=r"unknown config key 'model.sigmoid_prior'; valid keys here: \[.*'head'"):
        load_config(None, ["model.sigmoid_prior=0.1"])
    stored = OmegaConf.to_container(load_config(None))
    stored["model"]["sigmoid_prior"] = 0.1
    with pytest.raises(ConfigError, match=r"a stored run: .*'model.sigmoid_prior'"):
        config_from_dict(stored, "a stored run")


def test_pretrained_weights_load_from_a_local_file(tmp_path):
    source = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    model = build_model(backbone="resnet18", pretrained_path=str(path), num_keypoints=2)
    assert torch.equal(model.backbone.conv1.weight, source.conv1.weight)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection (a weight download) fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_a_tagged_timm_name_builds_without_downloading(no_network):
    model = build_model(backbone="mobilenetv3_small_050.lamb_in1k", num_keypoints=4)
    assert model(torch.randn(1, 3, 64, 96)).shape == (1, 4, 16, 24)
    # it is the tagged architecture, freshly initialised: the untagged name has the same parameter shapes
    plain = build_model(backbone="mobilenetv3_small_050", num_keypoints=4)
    assert [p.shape for p in model.parameters()] == [p.shape for p in plain.parameters()]


@pytest.mark.parametrize("name", ["resnet1800", "resnet1800.a1_in1k", "mobilenetv3_small_050.no_such_tag"])
def test_unknown_timm_names_and_tags_are_rejected(name, no_network):
    with pytest.raises(ValueError, match=f"unknown timm model '{name}'"):
        build_model(backbone=name)


def test_unknown_heads_and_missing_weight_files_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"^unknown model.head 'hourglass'; choose one of \[") as error:
        build_model(backbone="resnet18", head="hourglass")
    assert "'deconv'" in str(error.value) and "'fpn'" in str(error.value)
    with pytest.raises(FileNotFoundError, match="pretrained_path.*missing.pth"):
        build_model(backbone="resnet18", pretrained_path=str(tmp_path / "missing.pth"))


def test_unknown_head_norm_is_an_error():
    with pytest.raises(ValueError, match="unknown head_norm 'layer'"):
        build_model(backbone="mobilenetv3_small_100", head_norm="layer")
