"""Hydra configs shipped as package data (reach them with `pkg://embodied_vision.configs`)."""
