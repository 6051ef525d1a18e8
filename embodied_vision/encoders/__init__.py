"""Encoders: one module per family, all reachable through `create_encoder`."""
from embodied_vision.encoders import film_resnet, r3m_resnet  # noqa: F401  (registration)
from embodied_vision.encoders._contract import InputContract
from embodied_vision.encoders._registry import (
    PretrainedCfg,
    get_pretrained_cfgs,
    list_encoders,
    register_encoder,
)
from embodied_vision.encoders.base import Encoder
from embodied_vision.encoders.croco import CroCoEncoder, CroCoPair  # noqa: F401  (registration)
from embodied_vision.encoders.factory import (
    create_encoder,
    encoder_for_inference,
    load_encoder,
    load_pretrained,
)
from embodied_vision.encoders.i2p_mae import I2PMAE, I2PMAEEncoder  # noqa: F401  (registration)
from embodied_vision.encoders.nerf_mae import NerfMAE, NerfMAEEncoder  # noqa: F401  (registration)

__all__ = ['Encoder', 'InputContract', 'PretrainedCfg', 'create_encoder', 'encoder_for_inference',
           'get_pretrained_cfgs', 'list_encoders', 'load_encoder', 'load_pretrained',
           'register_encoder']
