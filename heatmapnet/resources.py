"""Where heatmapnet finds the files it ships: the named run configs and the keypoint-scheme metadata.

Both are written and edited in the checkout's top-level ``configs/`` and ``datasets/`` folders,
the only copies kept in the repository. Building a wheel (``pip install .``) copies their YAML
files into the package as ``heatmapnet/configs/`` and ``heatmapnet/datasets/`` (``setup.py``'s
``build_py``), where an installed copy reads them through :mod:`importlib.resources`. A checkout
or an editable install has no such package folders and reads the top-level ones, so an edit
there is seen at once.

Lookup order for each folder: the package data when it is there, else the checkout's folder.
"""
from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import List, Optional

#: The package whose data folders are looked up (a module attribute so tests can point it elsewhere).
PACKAGE = "heatmapnet"
#: The shipped folders; each has the same name in the checkout (top level) and in the package.
CONFIGS = "configs"
DATASETS = "datasets"
SHIPPED = (CONFIGS, DATASETS)

#: The folder above the package: the checkout's root when heatmapnet runs from one.
_CHECKOUT = Path(__file__).resolve().parent.parent


def _yaml_files(folder: Path, suffixes=(".yaml", ".yml")) -> List[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in suffixes and p.is_file())


def checkout_root() -> Optional[Path]:
    """The source checkout heatmapnet runs from (a source tree or an editable install), or None for
    an installed copy. A checkout is recognised by its ``setup.py`` beside the package folder;
    ``site-packages`` has none (and may hold unrelated top-level ``configs``/``datasets``)."""
    root = _CHECKOUT
    return root if (root / "setup.py").is_file() else None


def packaged_dir(kind: str) -> Optional[Path]:
    """``heatmapnet/<kind>/`` inside the imported package when it holds YAML files (an installed
    wheel), else None. ``kind`` is :data:`CONFIGS` or :data:`DATASETS`."""
    if kind not in SHIPPED:
        raise ValueError(f"unknown resource folder {kind!r}; expected one of {list(SHIPPED)}")
    try:
        folder = importlib.resources.files(PACKAGE) / kind
    except ModuleNotFoundError:
        return None
    # heatmapnet is installed as plain files (zip_safe=False); a zip import has no paths to hand out.
    if not isinstance(folder, Path):
        return None
    return folder if _yaml_files(folder) else None


def checkout_dir(kind: str) -> Optional[Path]:
    """The checkout's top-level ``<kind>/`` folder when heatmapnet runs from a checkout, else None."""
    if kind not in SHIPPED:
        raise ValueError(f"unknown resource folder {kind!r}; expected one of {list(SHIPPED)}")
    root = checkout_root()
    return root / kind if root is not None else None


def resource_dir(kind: str) -> Path:
    """The folder to read ``kind`` from: the package data, else the checkout's folder. When neither
    is there the package path is returned, so that messages name where the files were expected."""
    packaged = packaged_dir(kind)
    if packaged is not None:
        return packaged
    checkout = checkout_dir(kind)
    if checkout is not None:
        return checkout
    return Path(__file__).resolve().parent / kind


def config_dir() -> Path:
    """The folder of the named run configs (``heatmapnet train ytf68`` reads ``ytf68.yaml`` here)."""
    return resource_dir(CONFIGS)


def dataset_metadata_dir() -> Path:
    """The folder of the keypoint-scheme files (``coco17.yaml``, ``ibug68.yaml``, ...)."""
    return resource_dir(DATASETS)


def config_names() -> List[str]:
    """The names of the named configs (their ``.yaml`` files), sorted."""
    return sorted({p.stem for p in _yaml_files(config_dir(), (".yaml",))})


def scheme_names() -> List[str]:
    """The names of the keypoint-scheme files, sorted."""
    return sorted({p.stem for p in _yaml_files(dataset_metadata_dir())})
