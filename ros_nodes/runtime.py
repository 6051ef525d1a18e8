"""Process-level defaults for our entry points (console scripts and CLI commands only)."""
import os

__all__ = ['headless_rendering_default']


def headless_rendering_default() -> None:
    """MuJoCo renders through EGL when there is no display (set before mujoco is imported).

    Called by `sim_node`'s `main`, `embodied-vision pipeline` and `record`; the nodes
    themselves read no environment variables.
    """
    if 'DISPLAY' not in os.environ:
        os.environ.setdefault('MUJOCO_GL', 'egl')
        os.environ.setdefault('PYOPENGL_PLATFORM', 'egl')
