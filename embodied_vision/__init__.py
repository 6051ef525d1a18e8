"""embodied_vision: pretrained visual and language-grounded encoders for robots.

    >>> import embodied_vision as ev
    >>> encoder = ev.create_encoder('r3m_resnet50', checkpoint='~/.r3m/r3m_50/model.pt')
    >>> embedding = encoder(frames_uint8)          # (B, 2048)
    >>> fast = ev.deploy.compile(encoder, backend='auto')
"""
from embodied_vision import deploy
from embodied_vision.encoders import Encoder, create_encoder, list_encoders, load_encoder
from embodied_vision.version import __version__

__all__ = ['Encoder', '__version__', 'create_encoder', 'deploy', 'list_encoders',
           'load_encoder']
