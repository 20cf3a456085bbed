"""pip install of the two Python packages and their command-line tools, for use without colcon.

The ROS 2 package (interfaces, launch, config) is built by colcon from CMakeLists.txt; this file
only serves users who want the model library and CLIs in a plain Python environment.
"""

from setuptools import find_packages, setup

setup(
    name="rgpt-ros",
    version="0.1.0",
    description="RegionGPT region-level vision-language model and its ROS 2 node",
    python_requires=">=3.11",
    packages=find_packages(include=["rgpt_model", "rgpt_model.*", "rgpt_ros", "rgpt_ros.*"]),
    package_data={"rgpt_model": ["demo_model/*", "demo_model/**/*", "demo_model_v1/*",
                                 "configs/*"]},
    include_package_data=True,
    install_requires=[
        "torch==2.13.0",
        "transformers>=5.0,<6",
        "numpy>=2.0,<3",
        "safetensors",
        "tokenizers",
        "pillow",
        "tqdm",
    ],
    extras_require={
        "ros": ["rosbags>=0.11,<0.12", "rosbags-image"],
        "data": ["pycocotools", "pycocoevalcap", "scikit-image"],
        "speed": ["onnx", "onnxscript", "onnxruntime-gpu", "segment-anything"],
        "train": ["peft"],
    },
    entry_points={
        "console_scripts": [
            "rgpt=rgpt_model.cli:main",
            "rgpt-make-synthetic=rgpt_model.data.make_synthetic:main",
            "rgpt-node=rgpt_ros.node:main",
            "rgpt-bag=rgpt_ros.bag_cli:main",
        ],
    },
)
