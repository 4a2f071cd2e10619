from pathlib import Path

from setuptools import Extension, find_packages, setup

HERE = Path(__file__).parent

setup(
    name="heatmapnet",
    version="0.1.0",
    description="Keypoint heatmap models (CornerNet/CenterNet style): targets, losses, decoding, "
                "metrics, training and the MSE-vs-focal ablation",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["heatmapnet", "heatmapnet.*"]),
    # Keypoint-scheme metadata lives in datasets/ as data; installed copies read it from here.
    data_files=[("share/heatmapnet/datasets", [str(p.relative_to(HERE)) for p in sorted((HERE / "datasets").glob("*.yaml"))])],
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "timm>=0.9",
        "opencv-python-headless>=4.8",
        "numpy>=1.24",
        "scipy>=1.10",
        "omegaconf>=2.4",
        "pycocotools>=2.0.7",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "tensorboard>=2.12",
        "pillow>=9.0",
        "pytest>=7.0",
    ],
    # CPU kernels for target drawing and DARK decoding. Optional: without a C compiler the install
    # goes on and heatmapnet uses its PyTorch paths, which give the same values. Python's own
    # -fwrapv would slow their loops by half.
    ext_modules=[Extension("heatmapnet._kernels", ["heatmapnet/_kernels.c"], optional=True,
                           extra_compile_args=["-O3", "-fno-wrapv"])],
    entry_points={"console_scripts": ["heatmapnet=heatmapnet.cli:main"]},
)
