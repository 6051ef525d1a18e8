"""Optional dependencies: availability flags and `require_package`.

Heavy or platform-specific packages (torch_tensorrt, mujoco, rclpy, open3d) are imported
lazily through `require_package`, which names the pip extra that provides them.
"""
import importlib
import importlib.util
from types import ModuleType

__all__ = ['is_available', 'require_package']


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
