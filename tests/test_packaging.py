"""Packaging: the named configs and keypoint schemes ship inside the wheel as package data, are
found through heatmapnet.resources (package data, else the checkout), and the declared
requirements are right."""
import json
import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from heatmapnet import config, metadata, resources
from heatmapnet.config import ConfigError, data_root, load_config, resolve_config_path

REPO = Path(__file__).resolve().parent.parent
TOP_CONFIGS = sorted(p.name for p in (REPO / "configs").glob("*.yaml"))
TOP_SCHEMES = sorted(p.name for p in (REPO / "datasets").glob("*.yaml"))
# What setup.py needs to build; the copy keeps the build's files (build/, *.egg-info) out of the checkout.
BUILD_INPUTS = ["setup.py", "README.md", "pyproject.toml", "setup.cfg", "MANIFEST.in", "heatmapnet", "configs",
                "datasets"]

TINY_SCHEME = """\
name: tiny
keypoints: [nose, left_eye, right_eye]
flip_pairs: [[left_eye, right_eye]]
skeleton: []
oks_sigmas: [0.1, 0.2, 0.2]
"""


# ------------------------------------------------------------------------------------ the wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the checkout, as ``pip install .`` builds it (a few seconds)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "build", "*.egg-info")
    for name in BUILD_INPUTS:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        elif path.is_file():
            shutil.copy2(path, source / name)
    dist = work / "dist"
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                             "--disable-pip-version-check", "-q", "-w", str(dist), str(source)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    wheels = list(dist.glob("heatmapnet-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def wheel_names(wheel):
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def _dist_info_file(wheel, names, filename):
    (name,) = [n for n in names if n.endswith(f".dist-info/{filename}")]
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(name).decode("utf-8")


def test_the_checkout_commits_no_second_copy_of_configs_or_schemes():
    assert TOP_CONFIGS and TOP_SCHEMES
    assert not (REPO / "heatmapnet" / "configs").exists()
    assert not (REPO / "heatmapnet" / "datasets").exists()
    assert not (REPO / "datasets" / "__init__.py").exists()


def test_wheel_ships_every_config_and_scheme_as_package_data(wheel, wheel_names):
    with zipfile.ZipFile(wheel) as archive:
        for folder, files in (("configs", TOP_CONFIGS), ("datasets", TOP_SCHEMES)):
            shipped = sorted(n.split("/")[-1] for n in wheel_names if n.startswith(f"heatmapnet/{folder}/"))
            assert shipped == files, folder
            for name in files:  # byte for byte the checkout's file
                assert archive.read(f"heatmapnet/{folder}/{name}") == (REPO / folder / name).read_bytes()
    assert "heatmapnet/resources.py" in wheel_names


def test_wheel_has_no_top_level_datasets_or_configs(wheel, wheel_names):
    tops = {n.split("/")[0] for n in wheel_names}
    dist_info = tops - {"heatmapnet"}
    assert "heatmapnet" in tops and len(dist_info) == 1 and dist_info.pop().endswith(".dist-info"), tops
    assert not any(".data/" in n for n in wheel_names)  # no data_files (share/...) any more
    if any(n.endswith(".dist-info/top_level.txt") for n in wheel_names):
        assert _dist_info_file(wheel, wheel_names, "top_level.txt").split() == ["heatmapnet"]


def test_wheel_metadata_requires_pyyaml_and_pytest_only_for_tests(wheel, wheel_names):
    meta = Parser().parsestr(_dist_info_file(wheel, wheel_names, "METADATA"))
    requires = meta.get_all("Requires-Dist")
    by_name = {}
    for requirement in requires:
        spec, _, marker = requirement.partition(";")
        name = spec.strip().split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip().lower()
        by_name.setdefault(name, []).append(marker.strip())
    assert by_name.get("pyyaml") == [""], requires
    assert by_name.get("pytest") == ['extra == "test"'], requires
    assert "test" in meta.get_all("Provides-Extra")
    unconditional = {n for n, markers in by_name.items() if "" in markers}
    assert {"torch", "omegaconf", "pyyaml", "numpy"} <= unconditional and "pytest" not in unconditional


def test_installed_wheel_resolves_configs_and_schemes_outside_the_checkout(wheel, tmp_path):
    """The wheel unpacked as site-packages would hold it, imported from a folder that is not the
    checkout: named configs and schemes come from the package data, and data_root asks for
    HEATMAPNET_DATA."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    (site / "datasets").mkdir()  # an unrelated top-level folder in site-packages is not a checkout
    (site / "datasets" / "ibug68.yaml").write_text("not: a scheme\n")
    script = r"""
import json, os, heatmapnet
from heatmapnet import config, metadata, resources
out = {"package": heatmapnet.__file__, "checkout": str(resources.checkout_root()),
       "config_dir": str(resources.config_dir()), "schemes_dir": str(metadata.schemes_dir()),
       "ytf68": str(config.resolve_config_path("ytf68")), "configs": resources.config_names(),
       "schemes": metadata.available_schemes(), "ibug68": metadata.load_scheme("ibug68").source,
       "ibug68_points": metadata.load_scheme("ibug68").num_keypoints,
       "faces_steps": config.load_config("synthetic_faces").train.steps}
try:
    config.load_config("ytf68")
    out["ytf68_error"] = None
except config.ConfigError as error:
    out["ytf68_error"] = str(error)
os.environ["HEATMAPNET_DATA"] = "/data/here"
out["ytf68_train"] = config.load_config("ytf68").data.train.ann_file
print(json.dumps(out))
"""
    env = {k: v for k, v in os.environ.items() if k != "HEATMAPNET_DATA"}
    env["PYTHONPATH"] = str(site)
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    package = site / "heatmapnet"
    assert out["package"] == str(package / "__init__.py")
    assert out["checkout"] == "None"
    assert out["config_dir"] == str(package / "configs")
    assert out["schemes_dir"] == str(package / "datasets")
    assert out["ytf68"] == str(package / "configs" / "ytf68.yaml")
    assert out["configs"] == [Path(n).stem for n in TOP_CONFIGS]
    assert out["schemes"] == [Path(n).stem for n in TOP_SCHEMES]
    assert out["ibug68"] == str(package / "datasets" / "ibug68.yaml") and out["ibug68_points"] == 68
    assert out["faces_steps"] > 0
    assert "HEATMAPNET_DATA" in out["ytf68_error"]
    assert out["ytf68_train"] == "/data/here/ytf68/train"


# ------------------------------------------------------------------------------------ the lookup


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """An importable stand-in for an installed heatmapnet: resources.PACKAGE points at it. Returns
    its folder; add ``configs/`` or ``datasets/`` to give it package data."""
    name = f"hmn_fake_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "site" / name
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(resources, "PACKAGE", name)
    yield folder
    sys.modules.pop(name, None)


def _give_package_data(folder):
    (folder / "configs").mkdir()
    (folder / "configs" / "packaged.yaml").write_text("train: {steps: 7}\n")
    (folder / "datasets").mkdir()
    (folder / "datasets" / "tiny.yaml").write_text(TINY_SCHEME)


def test_package_data_comes_first_when_it_is_there(fake_package):
    _give_package_data(fake_package)
    assert resources.packaged_dir(resources.CONFIGS) == fake_package / "configs"
    assert resources.config_dir() == fake_package / "configs"
    assert resources.dataset_metadata_dir() == fake_package / "datasets"
    assert resources.config_names() == ["packaged"]
    assert resources.scheme_names() == ["tiny"]


def test_the_checkout_folders_are_the_fallback(fake_package):
    (fake_package / "configs").mkdir()  # present but empty: not package data
    assert resources.packaged_dir(resources.CONFIGS) is None
    assert resources.checkout_root() == REPO
    assert resources.config_dir() == REPO / "configs"
    assert resources.dataset_metadata_dir() == REPO / "datasets"
    assert resources.config_names() == [Path(n).stem for n in TOP_CONFIGS]
    assert resources.scheme_names() == [Path(n).stem for n in TOP_SCHEMES]
    assert resolve_config_path("ytf68") == REPO / "configs" / "ytf68.yaml"
    assert metadata.load_scheme("ibug68").source == str(REPO / "datasets" / "ibug68.yaml")


def test_the_real_package_in_a_checkout_reads_the_top_level_folders():
    assert resources.PACKAGE == "heatmapnet"
    assert resources.config_dir() == REPO / "configs"
    assert metadata.schemes_dir() == REPO / "datasets"
    assert resolve_config_path("ytf68") == REPO / "configs" / "ytf68.yaml"


def test_config_and_scheme_names_resolve_through_the_package_branch(fake_package):
    _give_package_data(fake_package)
    path = resolve_config_path("packaged")
    assert path == fake_package / "configs" / "packaged.yaml"
    assert load_config("packaged").train.steps == 7
    with pytest.raises(ConfigError, match="packaged"):  # the message lists what is there
        resolve_config_path("ytf68")
    assert metadata.schemes_dir() == fake_package / "datasets"
    assert metadata.available_schemes() == ["tiny"]
    scheme = metadata.load_scheme("tiny")
    assert scheme.source == str(fake_package / "datasets" / "tiny.yaml")
    assert scheme.flip_pairs == ((1, 2),)


def test_an_installed_copy_without_package_data_or_checkout(fake_package, tmp_path, monkeypatch):
    site = fake_package.parent
    (site / "configs").mkdir()  # unrelated top-level folders beside the package, no setup.py
    (site / "configs" / "other.yaml").write_text("x: 1\n")
    monkeypatch.setattr(resources, "_CHECKOUT", site)
    assert resources.checkout_root() is None
    assert resources.checkout_dir(resources.CONFIGS) is None
    assert resources.config_dir() == Path(resources.__file__).resolve().parent / "configs"
    with pytest.raises(ConfigError, match="ytf68"):
        resolve_config_path("ytf68")


def test_data_root_beside_the_checkout_or_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("HEATMAPNET_DATA", raising=False)
    assert data_root() == REPO.parent / "shared" / "data"
    monkeypatch.setenv("HEATMAPNET_DATA", str(tmp_path))
    assert data_root() == tmp_path


def test_data_root_of_an_installed_copy_needs_the_environment(monkeypatch, tmp_path):
    monkeypatch.setattr(resources, "_CHECKOUT", tmp_path)  # no setup.py: not a checkout
    monkeypatch.delenv("HEATMAPNET_DATA", raising=False)
    with pytest.raises(ConfigError, match="HEATMAPNET_DATA"):
        data_root()
    ytf68 = REPO / "configs" / "ytf68.yaml"  # by path: the lookup by name has no checkout either
    with pytest.raises(ConfigError, match="HEATMAPNET_DATA"):  # through ${data_root:} in a config
        load_config(str(ytf68))
    monkeypatch.setenv("HEATMAPNET_DATA", str(tmp_path / "data"))
    assert data_root() == tmp_path / "data"
    assert load_config(str(ytf68)).data.train.ann_file == str(tmp_path / "data" / "ytf68" / "train")


def test_unknown_resource_folder_is_an_error():
    with pytest.raises(ValueError, match="configs"):
        resources.packaged_dir("weights")


def test_ci_runs_the_readme_test_command():
    command = 'pip install -e ".[test]" -c constraints.txt && python -m pytest -q'
    assert command in (REPO / "README.md").read_text(encoding="utf-8")
    lines = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert command in lines and "set -euo pipefail" in lines
    assert config.CONFIG_DIR == REPO / "configs"
