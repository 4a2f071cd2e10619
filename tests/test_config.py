"""Config keys with one legal value or one mode: the retired ``target.stride`` (its one value
loads with a warning, another is an error naming it), ``eval.max_instances`` (multi) beside
``eval.max_people`` (bottomup), and the one-line warning for a setting the chosen mode ignores."""
import pytest
from omegaconf import OmegaConf

from heatmapnet import build
from heatmapnet.config import RunConfig, config_from_dict, load_config
from heatmapnet.errors import ConfigError


def _write(tmp_path, text: str):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return str(path)


def _stored(**sections) -> dict:
    """A stored config as a checkpoint holds one: every schema key, with ``sections`` changed."""
    values = OmegaConf.to_container(OmegaConf.structured(RunConfig))
    for section, changes in sections.items():
        values[section].update(changes)
    return values


# -- target.stride: one legal value, so not a setting -------------------------------------------
def test_a_file_that_sets_target_stride_to_4_loads_with_one_warning_line(tmp_path, capsys):
    path = _write(tmp_path, "target: {stride: 4, sigma: 1.5}\n")
    config = load_config(path)
    assert "stride" not in config.target and config.target.sigma == 1.5
    assert capsys.readouterr().err == (f"warning: target.stride is no longer a setting (the models' heatmaps are "
                                       f"always at stride 4); remove it from {path}\n")


def test_another_target_stride_is_an_error_naming_the_key(tmp_path):
    path = _write(tmp_path, "target: {stride: 8}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (f"{path}: target.stride=8: no longer a setting: the models' heatmaps are always "
                                 "at stride 4")
    with pytest.raises(ConfigError, match=r"^override 'target.stride=2': target.stride=2: no longer a setting"):
        load_config("synthetic_faces", ["target.stride=2"])


def test_a_stored_config_with_target_stride_loads_silently(capsys):
    stored = _stored(target={"stride": 4})
    assert stored["target"]["stride"] == 4  # as every checkpoint written before the key was retired
    config = config_from_dict(stored, "a checkpoint's config")
    assert "stride" not in config.target and capsys.readouterr().err == ""


def test_the_codec_stride_is_4_and_the_input_size_must_divide_by_it():
    config = load_config("synthetic_faces", ["data.input_size=[96,64]"])
    codec = build.build_codec(config, build.build_scheme(config))
    assert codec.stride == 4 and codec.heatmap_size == (16, 24)  # 64 / 4 rows, 96 / 4 columns
    with pytest.raises(ConfigError, match=r"data.input_size=\[98, 64\]: width and height must divide by 4"):
        load_config("synthetic_faces", ["data.input_size=[98,64]"])


# -- eval.max_instances (multi) and eval.max_people (bottomup) -----------------------------------
def test_bottomup_decodes_eval_max_people_per_image():
    config = load_config("people_bottomup", ["eval.max_people=7"])
    assert build.build_codec(config, build.build_scheme(config)).max_people == 7


def test_a_bottomup_config_stored_before_max_people_keeps_its_people_count():
    stored = _stored(data={"mode": "bottomup"}, eval={"max_instances": 9})
    del stored["eval"]["max_people"]  # a checkpoint from before the key
    assert config_from_dict(stored, "old").eval.max_people == 9
    stored = _stored(data={"mode": "multi"}, eval={"max_instances": 9})
    del stored["eval"]["max_people"]
    config = config_from_dict(stored, "old")
    assert (config.eval.max_instances, config.eval.max_people) == (9, 20)  # multi: the default people


# -- settings the chosen mode ignores ------------------------------------------------------------
IGNORED = [
    ("synthetic_faces", "bottomup.size_weight=0.5", "warning: bottomup.size_weight is ignored in data.mode=topdown "
                                                    "(read in data.mode=bottomup)"),
    ("synthetic_faces", "bottomup.joint_offset_weight=2", "warning: bottomup.joint_offset_weight is ignored in "
                                                          "data.mode=topdown (read in data.mode=bottomup)"),
    ("synthetic_people", "eval.joint_threshold=0.3", "warning: eval.joint_threshold is ignored in data.mode=multi "
                                                     "(read in data.mode=bottomup)"),
    ("synthetic_faces", "eval.person_score=centre", "warning: eval.person_score is ignored in data.mode=topdown "
                                                    "(read in data.mode=bottomup)"),
    ("synthetic_people", "eval.max_people=5", "warning: eval.max_people is ignored in data.mode=multi "
                                              "(read in data.mode=bottomup)"),
    ("people_bottomup", "eval.max_instances=5", "warning: eval.max_instances is ignored in data.mode=bottomup "
                                                "(read in data.mode=multi)"),
    ("synthetic_faces", "data.train.people=[1,3]", "warning: data.train.people is ignored with "
                                                   "data.train.source=synthetic_faces (read by mosaic sources only)"),
    ("synthetic_faces", "data.val.people=[1,3]", "warning: data.val.people is ignored with "
                                                 "data.val.source=synthetic_faces (read by mosaic sources only)"),
]


@pytest.mark.parametrize("name, override, line", IGNORED, ids=[override for _, override, _ in IGNORED])
def test_a_setting_the_mode_ignores_gets_one_warning_line(capsys, name, override, line):
    load_config(name, [override])
    assert capsys.readouterr().err == line + "\n"


def test_the_same_settings_give_no_warning_where_they_are_read_or_at_their_defaults(capsys):
    load_config("people_bottomup", ["bottomup.size_weight=0.5", "eval.joint_threshold=0.3", "eval.max_people=5"])
    load_config("synthetic_people", ["eval.max_instances=5"])
    load_config("synthetic_faces", ["eval.joint_threshold=0.2", "data.train.people=[2,4]"])  # the defaults
    load_config("lsp_mosaic")  # mosaics read their people and canvas
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("name", ["synthetic_faces", "synthetic_people", "people_bottomup", "ytf68", "lsp", "coco",
                                  "mtfl5", "trunk"])
def test_the_named_configs_load_without_warnings(capsys, name):
    load_config(name, validate=False)
    assert capsys.readouterr().err == ""
