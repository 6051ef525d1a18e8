"""Camera geometry: depth back-projection, multi-view fusion, radiance grids, surface sampling.

numpy only (torch only for `RadianceGrid.to_tensor`); never imports mujoco or rclpy.
"""
from embodied_vision.geometry.pointcloud import (
    depth_to_points,
    fuse_views,
    project_points,
    transform_points,
    voxel_downsample,
)
from embodied_vision.geometry.radiance_grid import (
    RadianceGrid,
    alpha_to_density,
    density_to_alpha,
    fuse_radiance_grid,
    grid_resolution,
)
from embodied_vision.geometry.rotations import quat_to_matrix
from embodied_vision.geometry.sampling import (
    PRIMITIVES,
    primitive_area,
    sample_object_points,
    sample_primitive_surface,
)

__all__ = [
    'PRIMITIVES',
    'RadianceGrid',
    'alpha_to_density',
    'density_to_alpha',
    'depth_to_points',
    'fuse_radiance_grid',
    'fuse_views',
    'grid_resolution',
    'primitive_area',
    'project_points',
    'quat_to_matrix',
    'sample_object_points',
    'sample_primitive_surface',
    'transform_points',
    'voxel_downsample',
]
