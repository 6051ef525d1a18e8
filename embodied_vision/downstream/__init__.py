"""Downstream models on pretrained backbones: two-view depth and relative pose on CroCo."""
from embodied_vision.downstream.croco_geometry import (
    PairGeometryModel,
    create_pair_geometry_model,
    croco_dpt_hooks,
    load_pair_geometry_model,
    matrix_to_rotation_6d,
    rotation_6d_to_matrix,
    save_pair_geometry_model,
)

__all__ = ['PairGeometryModel', 'create_pair_geometry_model', 'croco_dpt_hooks',
           'load_pair_geometry_model', 'matrix_to_rotation_6d', 'rotation_6d_to_matrix',
           'save_pair_geometry_model']
