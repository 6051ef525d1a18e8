"""Policies and planners, installed as `embodied_vision.policies`."""
