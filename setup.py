from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_py import build_py as _build_py

HERE = Path(__file__).parent

# Named configs and keypoint-scheme metadata ship inside the package as package data, read with
# importlib.resources (heatmapnet/resources.py). The top-level configs/ and datasets/ folders stay
# their only copies in the repository: build_py copies their YAML files into the built package as
# heatmapnet/configs/ and heatmapnet/datasets/. datasets/ is data, never a top-level package.
SHIPPED_FOLDERS = ("configs", "datasets")


def shipped_files():
    """(source relative to setup.py, path inside the package) of every shipped YAML file."""
    return [(f"{folder}/{p.name}", f"{folder}/{p.name}")
            for folder in SHIPPED_FOLDERS for p in sorted((HERE / folder).glob("*.yaml"))]


class build_py(_build_py):
    """setuptools' build_py that also copies configs/*.yaml and datasets/*.yaml into the package.
    An editable install copies nothing: the package then reads the checkout's folders directly."""

    def _shipped_mapping(self):
        package_dir = Path(self.build_lib, "heatmapnet")
        return {str(package_dir / inside): str(HERE / source) for source, inside in shipped_files()}

    def run(self):
        super().run()
        if self.editable_mode:
            return
        for target, source in self._shipped_mapping().items():
            self.mkpath(str(Path(target).parent))
            self.copy_file(source, target, preserve_mode=False)

    def get_outputs(self, include_bytecode=True):
        outputs = super().get_outputs(include_bytecode)
        if self.editable_mode:  # setuptools then lists get_output_mapping(), which has them already
            return outputs
        return outputs + list(self._shipped_mapping())

    def get_output_mapping(self):
        mapping = super().get_output_mapping()
        mapping.update(self._shipped_mapping())
        return dict(sorted(mapping.items()))

    def get_source_files(self):
        # an sdist built from the checkout carries the folders, so a wheel built from it has them too
        return super().get_source_files() + [source for source, _ in shipped_files()]


setup(
    name="heatmapnet",
    version="0.1.0",
    description="Keypoint heatmap models (CornerNet/CenterNet style): targets, losses, decoding, "
                "metrics, training and the MSE-vs-focal ablation",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["heatmapnet", "heatmapnet.*"]),
    cmdclass={"build_py": build_py},
    zip_safe=False,  # the shipped YAML files are read as plain files
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "timm>=0.9",
        "opencv-python-headless>=4.8",
        "numpy>=1.24",
        "scipy>=1.10",
        "omegaconf>=2.4",
        "PyYAML>=5.1",
        "pycocotools>=2.0.7",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "tensorboard>=2.12",
        "pillow>=9.0",
    ],
    # export: `heatmapnet export` and `predict --backend onnx` (ONNX files run by onnxruntime; the
    # TorchScript-based exporter needs no onnxscript). The test extra has them, so CI runs those tests,
    # and pytest-xdist: the suite runs on every core (pytest.ini's -n logical).
    extras_require={"export": ["onnx>=1.15", "onnxruntime>=1.17"],
                    "test": ["pytest>=7.0", "pytest-xdist>=3.5", "onnx>=1.15", "onnxruntime>=1.17"]},
    # CPU kernels for target drawing and DARK decoding. Optional: without a C compiler the install
    # goes on and heatmapnet uses its PyTorch paths, which give the same values. Python's own
    # -fwrapv would slow their loops by half.
    ext_modules=[Extension("heatmapnet._kernels", ["heatmapnet/_kernels.c"], optional=True,
                           extra_compile_args=["-O3", "-fno-wrapv"])],
    entry_points={"console_scripts": ["heatmapnet=heatmapnet.cli:main"]},
)
