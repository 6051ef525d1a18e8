"""Reusable blocks: 2D RoPE, 2D sin-cos tables, (cross-)attention, transformer blocks,
spatial softmax, DPT dense head."""
from embodied_vision.layers.attention import Attention, CrossAttention, RopeTables
from embodied_vision.layers.blocks import DecoderBlock, EncoderBlock
from embodied_vision.layers.dpt import DPTHead
from embodied_vision.layers.pos_embed import (
    resample_pos_embed_2d,
    sincos_1d,
    sincos_pos_embed_2d,
)
from embodied_vision.layers.rope import RoPE2D, apply_rope_2d, grid_positions, rope_2d_tables
from embodied_vision.layers.spatial_softmax import SpatialSoftmax

__all__ = ['Attention', 'CrossAttention', 'DPTHead', 'DecoderBlock', 'EncoderBlock', 'RoPE2D',
           'RopeTables', 'SpatialSoftmax', 'apply_rope_2d', 'grid_positions',
           'resample_pos_embed_2d', 'rope_2d_tables', 'sincos_1d', 'sincos_pos_embed_2d']
