"""One distribution, two import packages: the PyTorch library and the ROS 2 node.

Also a valid ament_python package: ``colcon build`` installs launch/, config/ and the
package marker through ``data_files`` (see package.xml).
"""
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "densemtl_ros"
HERE = Path(__file__).resolve().parent  # the source folder, also when run through a symlink


def tree(folder: str) -> list[str]:
    return sorted(str(p.relative_to(HERE)) for p in (HERE / folder).rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts)


def data_files() -> list[tuple[str, list[str]]]:
    """ament_python layout: share/<package>/{package.xml,launch,config/...}."""
    entries = [
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ]
    by_folder: dict[str, list[str]] = {}
    for folder in ("launch", "config"):
        for path in tree(folder):
            by_folder.setdefault(str(Path(path).parent), []).append(path)
    entries += [(f"share/{PACKAGE}/{folder}", files) for folder, files in sorted(by_folder.items())]
    return entries


setup(
    name=PACKAGE,
    version="0.1.0",
    description="Dense multi-task scene understanding (DenseMTL cross-task attention) for ROS 2",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["densemtl_core", "densemtl_core.*",
                                    "densemtl_ros", "densemtl_ros.*"]),
    package_data={"densemtl_core": ["assets/*"]},
    data_files=data_files(),
    install_requires=[
        "numpy>=1.24",
        "PyYAML>=6",
        "Pillow>=9",
        "safetensors>=0.4",
        "tqdm>=4.60",
        "opencv-python-headless>=4.8",  # 16-bit multi-channel PNGs (Synthia labels)
        "onnx>=1.15",
        "onnxruntime>=1.16",
        "onnxconverter-common>=1.14",  # densemtl-export --precision fp16
        "rosbags>=0.10",  # bag evaluation reads and writes bags without a ROS installation
    ],
    extras_require={
        # torch is left to the platform (JetPack wheels on Jetson); this repository's
        # requirements.txt pins the CPU build used for development and CI.
        "torch": ["torch>=2.1"],
        "test": ["pytest>=7"],
    },
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "densemtl-train = densemtl_core.train:main",
            "densemtl-eval = densemtl_core.evaluate:main",
            "densemtl-export = densemtl_core.export.cli:main",
            "densemtl-node = densemtl_ros.node.densemtl_node:console_main",
            "densemtl-lifecycle-node = densemtl_ros.node.densemtl_node:lifecycle_console_main",
            "densemtl-bag-eval = densemtl_ros.bag_tools.bag_eval:main",
            "densemtl-make-bag = densemtl_ros.bag_tools.make_bag:main",
        ],
    },
)
