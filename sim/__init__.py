"""MuJoCo tabletop suite, installed as `embodied_vision.sim`."""
