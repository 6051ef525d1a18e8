"""Downstream models on pretrained backbones: two-view depth and relative pose on CroCo,
semantic voxel labelling on NeRF-MAE."""
from embodied_vision.downstream.croco_geometry import (
    PairGeometryModel,
    create_pair_geometry_model,
    croco_dpt_hooks,
    load_pair_geometry_model,
    matrix_to_rotation_6d,
    rotation_6d_to_matrix,
    save_pair_geometry_model,
)
from embodied_vision.downstream.nerf_mae_semantics import (
    VoxelSemanticsModel,
    create_voxel_semantics_model,
    load_voxel_semantics_model,
    save_voxel_semantics_model,
)

__all__ = ['PairGeometryModel', 'VoxelSemanticsModel', 'create_pair_geometry_model',
           'create_voxel_semantics_model', 'croco_dpt_hooks', 'load_pair_geometry_model',
           'load_voxel_semantics_model', 'matrix_to_rotation_6d', 'rotation_6d_to_matrix',
           'save_pair_geometry_model', 'save_voxel_semantics_model']
