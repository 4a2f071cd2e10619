"""The build layer and its registries: every config setting reaches the component it configures,
unknown names are errors listing the choices, and a newly registered component is buildable by
name with no other code change."""
import inspect
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn as nn
from omegaconf import OmegaConf

from heatmapnet import build
from heatmapnet.codec import CODECS, HeatmapCodec
from heatmapnet.config import ConfigError, RunConfig, load_config
from heatmapnet.losses import LOSSES
from heatmapnet.models import HEADS, HeatmapModel
from heatmapnet.modes import MODES, MultiInstanceMode, TopDownMode
from heatmapnet.registry import Registry
from heatmapnet.targets import SIGMA_POLICIES, FixedSigma, OKSSigma, RadiusSigma

LN2 = math.log(2.0)
SMALL = ["model.backbone=mobilenetv3_small_050", "data.input_size=[64,64]"]

#: A value different from the default for every setting of every loss section. The tests below
#: fail if a section gains a setting that is not listed here.
NON_DEFAULT = {
    "focal": {"alpha": 1.0, "beta": 2.0},
    "retina_focal": {"alpha": 0.5, "gamma": 1.0, "reduction": "positives"},
    "mse": {"convention": "hrnet"},
    "awing": {"alpha": 2.5, "omega": 10.0, "epsilon": 0.5, "theta": 0.25},
}


def config_with(*overrides):
    return load_config(None, list(overrides))


def loss_config(name, settings):
    return config_with(f"loss.name={name}", *(f"loss.{name}.{key}={value}" for key, value in settings.items()))


def loss_sections():
    """The loss sections of the schema itself (not of any YAML file)."""
    schema = OmegaConf.structured(RunConfig)
    return {key: schema.loss[key] for key in schema.loss if key != "name"}


# ----------------------------------------------------------------------------------------------
# Losses: every setting of a section reaches the loss
# ----------------------------------------------------------------------------------------------
def test_every_registered_loss_has_a_config_section_and_every_section_a_loss():
    assert set(loss_sections()) == set(LOSSES.names())
    assert set(NON_DEFAULT) == set(LOSSES.names())


@pytest.mark.parametrize("name", sorted(NON_DEFAULT))
def test_a_loss_section_holds_exactly_its_constructors_arguments(name):
    parameters = inspect.signature(LOSSES.get(name)).parameters
    assert set(parameters) == set(loss_sections()[name].keys())
    # every argument has a default, and the schema's default is the constructor's
    for key, parameter in parameters.items():
        assert parameter.default is not inspect.Parameter.empty
        assert loss_sections()[name][key] == parameter.default


@pytest.mark.parametrize("name", sorted(NON_DEFAULT))
def test_every_loss_setting_given_in_the_config_takes_effect(name):
    settings = NON_DEFAULT[name]
    defaults = loss_sections()[name]
    assert set(settings) == set(defaults.keys()), "NON_DEFAULT must set every setting of the section"
    for key, value in settings.items():
        assert value != defaults[key], f"loss.{name}.{key}: {value!r} is the default"
    loss = build.build_loss(loss_config(name, settings))
    assert type(loss) is LOSSES.get(name)
    for key, value in settings.items():
        assert getattr(loss, key) == value, f"loss.{name}.{key} did not reach the loss"


def test_built_losses_compute_with_their_configured_settings():
    logits = torch.full((1, 1, 1, 3), math.log(3.0))  # p = 3/4
    target = torch.tensor([[[[1.0, 0.5, 0.0]]]])
    # focal alpha 1, beta 2: -(1/4) ln(3/4) - (1/2)^2 (3/4) ln(1/4) - (3/4) ln(1/4) = 1.371572 (1 positive)
    focal = build.build_loss(loss_config("focal", NON_DEFAULT["focal"]))
    assert focal(logits, target).item() == pytest.approx(1.371572, abs=2e-6)
    # retina alpha 0.5, gamma 1, positives, at logit 0 (p = 1/2): every element 0.5 * 0.5 * ln2
    # (soft target 0.5: 1 - p_t = 0.5 too), 3 elements over 1 positive = 0.75 ln2 = 0.519860
    retina = build.build_loss(loss_config("retina_focal", NON_DEFAULT["retina_focal"]))
    assert retina(torch.zeros(1, 1, 1, 3), target).item() == pytest.approx(0.519860, abs=1e-6)
    # mse hrnet: 0.5 * mean((pred - target)^2) = 0.5 * (1 + 0.25 + 0) / 3 = 0.208333
    mse = build.build_loss(loss_config("mse", NON_DEFAULT["mse"]))
    assert mse(torch.zeros(1, 1, 1, 3), target).item() == pytest.approx(0.208333, abs=1e-6)
    # awing alpha 2.5, omega 10, epsilon 0.5, theta 0.25, target 0:
    # |d| = 0.2 < theta: 10 ln(1 + (0.2 / 0.5)^2.5) = 10 ln(1.101193) = 0.963940
    # |d| = 0.3 >= theta (with the default theta 0.5 it would be 10 ln(1 + 0.6^2.5) = 2.459650):
    #   (theta/epsilon)^2.5 = 0.5^2.5 = 0.176777; A = 10 / 1.176777 * 2.5 * 0.5^1.5 / 0.5 = 15.022110,
    #   C = 0.25 A - 10 ln(1.176777) = 2.127737; A * 0.3 - C = 2.378896
    awing = build.build_loss(loss_config("awing", NON_DEFAULT["awing"]))
    values = [awing(torch.full((1, 1, 1, 1), d), torch.zeros(1, 1, 1, 1)).item() for d in (0.2, 0.3)]
    assert values == pytest.approx([0.963940, 2.378896], abs=3e-6)


def test_retina_focal_alpha_null_disables_balancing():
    loss = build.build_loss(config_with("loss.name=retina_focal", "loss.retina_focal.alpha=null"))
    assert loss.alpha is None
    # no balancing, gamma 2, mean: a positive and a negative at p = 1/2 cost ln2/4 each
    value = loss(torch.zeros(1, 1, 1, 2), torch.tensor([[[[1.0, 0.0]]]]))
    assert value.item() == pytest.approx(0.25 * LN2, rel=1e-6)


def test_a_misspelt_loss_setting_is_a_config_error():
    with pytest.raises(ConfigError, match=r"unknown config key 'loss.focal.gamma'.*\['alpha', 'beta'\]"):
        config_with("loss.focal.gamma=1.0")
    with pytest.raises(ConfigError, match="loss.alpha"):  # the old flat keys are gone
        config_with("loss.alpha=1.0")


def test_invalid_loss_settings_from_the_config_reach_the_loss_checks():
    with pytest.raises(ValueError, match="alpha >= 0 and beta >= 0"):
        build.build_loss(config_with("loss.focal.beta=-1"))
    with pytest.raises(ValueError, match="reduction"):
        build.build_loss(config_with("loss.name=retina_focal", "loss.retina_focal.reduction=max"))


# ----------------------------------------------------------------------------------------------
# Unknown names
# ----------------------------------------------------------------------------------------------
def test_unknown_names_are_errors_listing_the_choices():
    cases = [
        (lambda: build.build_loss(config_with("loss.name=l7")), "loss.name", "l7", LOSSES),
        (lambda: build.output_activation(config_with("loss.name=l7")), "loss.name", "l7", LOSSES),
        (lambda: build.build_model(config_with(*SMALL, "model.head=hourglass"),
                                   build.build_scheme(config_with())), "model.head", "hourglass", HEADS),
        (lambda: build.build_codec(config_with("target.sigma_policy=gauss"), build.build_scheme(config_with())),
         "target.sigma_policy", "gauss", SIGMA_POLICIES),
        (lambda: build.build_mode(config_with("data.mode=sideways"), build.build_scheme(config_with())),
         "data.mode", "sideways", MODES),
    ]
    for make, key, name, registry in cases:
        with pytest.raises(ValueError) as error:
            make()
        assert str(error.value) == f"unknown {key} '{name}'; choose one of {registry.names()}"
    assert set(LOSSES.names()) >= {"awing", "focal", "mse", "retina_focal"}
    assert set(SIGMA_POLICIES.names()) >= {"fixed", "radius", "oks"}
    assert set(MODES.names()) >= {"topdown", "multi", "bottomup"}


# ----------------------------------------------------------------------------------------------
# build_model: the loss decides the activation
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss, activation", [("focal", "sigmoid"), ("retina_focal", "sigmoid"),
                                              ("mse", "identity"), ("awing", "identity")])
def test_build_model_takes_its_activation_from_the_loss(loss, activation):
    config = config_with(*SMALL, f"loss.name={loss}", "model.head=deconv", "model.head_channels=16",
                         "model.head_norm=group")
    scheme = build.build_scheme(config)
    assert build.output_activation(config) == activation
    model = build.build_model(config, scheme).eval()
    assert isinstance(model, HeatmapModel)
    assert model.config.output_activation == activation
    # every model setting of the config reached it
    assert (model.config.backbone, model.config.head, model.config.head_channels, model.config.head_norm) == (
        "mobilenetv3_small_050", "deconv", 16, "group")
    assert isinstance(model.head.upsample[1], nn.GroupNorm) and model.head.upsample[0].out_channels == 16
    assert model.config.num_keypoints == scheme.num_keypoints == 68
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        raw, maps = model(images), model.heatmaps(images)
    assert raw.shape == (2, 68, 16, 16)
    if activation == "sigmoid":
        torch.testing.assert_close(maps, torch.sigmoid(raw), rtol=0, atol=0)
        # the RetinaNet prior: bias -ln 9, so a fresh model predicts about 0.1
        assert model.head.classifier.bias[0].item() == pytest.approx(-math.log(9.0), abs=1e-6)
    else:
        torch.testing.assert_close(maps, raw, rtol=0, atol=0)
        assert torch.all(model.head.classifier.bias == 0)


# ----------------------------------------------------------------------------------------------
# build_codec: auto targets follow the loss; explicit settings override
# ----------------------------------------------------------------------------------------------
def codec_for(*overrides):
    config = config_with(*overrides)
    return build.build_codec(config, build.build_scheme(config))


def test_auto_targets_are_radius_with_exact_peak_for_focal_and_fixed_sigma_without_for_mse():
    common = ["target.sigma_policy=auto", "target.sigma=3.0", "target.min_overlap=0.5",
              "target.radius_formula=centernet"]
    focal = codec_for("loss.name=focal", *common)
    assert isinstance(focal, HeatmapCodec)
    assert focal.sigma_policy == RadiusSigma(min_overlap=0.5, formula="centernet")
    assert focal.exact_peak is True
    mse = codec_for("loss.name=mse", *common)
    assert mse.sigma_policy == FixedSigma(3.0)
    assert mse.exact_peak is False
    assert codec_for("loss.name=retina_focal").sigma_policy == RadiusSigma()
    assert codec_for("loss.name=awing").sigma_policy == FixedSigma(2.0)


def test_explicit_sigma_policies_and_exact_peak_override_the_loss():
    assert codec_for("loss.name=focal", "target.sigma_policy=fixed", "target.sigma=1.5").sigma_policy == FixedSigma(1.5)
    assert codec_for("loss.name=mse", "target.sigma_policy=radius").sigma_policy == RadiusSigma()
    oks = codec_for("loss.name=mse", "target.sigma_policy=oks", "target.oks_scale=2.0").sigma_policy
    assert isinstance(oks, OKSSigma) and oks.scale == 2.0 and len(oks.oks_sigmas) == 68
    assert codec_for("loss.name=focal", "target.exact_peak=false").exact_peak is False
    assert codec_for("loss.name=mse", "target.exact_peak=true").exact_peak is True


def test_the_codec_reads_input_size_and_decoding_settings_from_the_config():
    codec = codec_for("data.input_size=[96,64]", "eval.refine=quarter", "eval.blur_sigma=1.5")
    assert codec.input_size == (96, 64) and codec.stride == 4 and codec.heatmap_size == (16, 24)
    assert (codec.refine, codec.blur_sigma) == ("quarter", 1.5)


def test_the_exact_peak_reaches_the_rendered_targets():
    # a keypoint between heatmap pixels: only an exact-peak target reaches 1.0
    for loss, peak in (("focal", 1.0), ("mse", None)):
        codec = codec_for(f"loss.name={loss}", "data.input_size=[64,64]")
        heatmaps = codec.encode(np.array([[[30.0, 30.0]]]), np.ones((1, 1), bool)).heatmaps
        if peak is None:
            assert heatmaps.max().item() < 1.0
        else:
            assert heatmaps.max().item() == peak


# ----------------------------------------------------------------------------------------------
# build_mode
# ----------------------------------------------------------------------------------------------
def test_build_mode_follows_data_mode():
    config = config_with("data.mode=topdown", "data.padding=1.5")
    mode = build.build_mode(config, build.build_scheme(config))
    assert type(mode) is TopDownMode and mode.padding == 1.5
    config = config_with("data.mode=multi", "eval.max_instances=7")
    mode = build.build_mode(config, build.build_scheme(config))
    assert type(mode) is MultiInstanceMode
    assert mode.max_peaks == 7 * 68  # max_instances per keypoint type, 68 types
    assert MODES.get("topdown").codec in CODECS and MODES.get("multi").codec in CODECS


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------
def test_a_fresh_registry_registers_lists_and_refuses():
    widgets = Registry("widget.kind")
    assert len(widgets) == 0 and widgets.names() == []
    with pytest.raises(ValueError, match=r"^unknown widget.kind 'a'; choose one of \[\]$"):
        widgets.get("a")

    @widgets.register("beta")
    class Beta:
        pass

    def alpha():
        return "alpha"

    assert widgets.register("alpha")(alpha) is alpha  # the decorator returns what it registers
    assert widgets.get("beta") is Beta and widgets.get("alpha") is alpha
    assert widgets.names() == ["alpha", "beta"] and list(widgets) == ["alpha", "beta"] and len(widgets) == 2
    assert "alpha" in widgets and "gamma" not in widgets and 3 not in widgets
    with pytest.raises(ValueError, match=r"^unknown widget.kind 'gamma'; choose one of \['alpha', 'beta'\]$"):
        widgets.get("gamma")
    with pytest.raises(ValueError, match="widget.kind 'beta' is registered twice"):
        widgets.register("beta")(object)
    assert widgets.get("beta") is Beta  # the refused registration changed nothing


# ----------------------------------------------------------------------------------------------
# New components: one registered class, buildable by name from a config
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def scratch_registries(monkeypatch):
    """The global registries with copies of their tables, restored after the test."""
    for registry in (LOSSES, HEADS, SIGMA_POLICIES, MODES):
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))


def test_a_registered_toy_head_and_loss_are_built_by_name(scratch_registries):
    @HEADS.register("toy_head")
    class ToyHead(nn.Module):
        def __init__(self, in_channels, in_strides, num_keypoints, channels, norm):
            super().__init__()
            assert in_strides[0] == 4
            self.classifier = nn.Conv2d(in_channels[0], num_keypoints, 1)

        def forward(self, features):
            return self.classifier(features[0])

    @LOSSES.register("toy_l1")
    class ToyL1(nn.Module):
        output_activation = "sigmoid"

        def forward(self, prediction, target, keypoint_weights=None):
            return (torch.sigmoid(prediction) - target).abs().mean()

    config = config_with(*SMALL, "model.head=toy_head", "loss.name=toy_l1")
    scheme = build.build_scheme(config)
    loss = build.build_loss(config)
    model = build.build_model(config, scheme)
    assert type(loss) is ToyL1 and type(model.head) is ToyHead
    assert model.config.output_activation == "sigmoid"
    assert model.head.classifier.bias[0].item() == pytest.approx(-math.log(9.0), abs=1e-6)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 68, 16, 16)
    # the codec's auto target follows the toy loss's sigmoid
    codec = build.build_codec(config, scheme)
    assert isinstance(codec.sigma_policy, RadiusSigma) and codec.exact_peak is True
    # |sigmoid(0) - 0| averaged: 0.5
    assert loss(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2)).item() == 0.5


def test_a_registered_toy_sigma_policy_and_mode_are_built_by_name(scratch_registries):
    @SIGMA_POLICIES.register("toy_sigma")
    @dataclass(frozen=True)
    class DoubleSigma:
        sigma: float

        @classmethod
        def from_config(cls, target, scheme):
            return cls(2.0 * float(target.sigma))

        def __call__(self, box_sizes, num_keypoints):
            return torch.full((box_sizes.shape[0], num_keypoints), self.sigma)

    @MODES.register("toy_mode")
    class ToyMode:
        codec = "heatmap"

        def __init__(self, name):
            self.name = name

        @classmethod
        def from_config(cls, config, scheme):
            return cls(scheme.name)

    config = config_with("data.mode=toy_mode", "target.sigma_policy=toy_sigma", "target.sigma=1.25",
                         "data.input_size=[64,64]")
    scheme = build.build_scheme(config)
    mode = build.build_mode(config, scheme)
    assert type(mode) is ToyMode and mode.name == scheme.name
    codec = build.build_codec(config, scheme)
    assert codec.sigma_policy == DoubleSigma(2.5)
    encoded = codec.encode(np.array([[[30.0, 30.0], [10.0, 50.0]]]), np.ones((1, 2), bool))
    assert encoded.sigmas.tolist() == [[2.5, 2.5]]


def test_registered_toy_components_leave_the_registries_as_they_were():
    # runs after the two tests above (file order): their registrations were undone
    assert "toy_head" not in HEADS and "toy_l1" not in LOSSES
    assert "toy_sigma" not in SIGMA_POLICIES and "toy_mode" not in MODES
    assert {"fpn", "deconv"} <= set(HEADS.names())
