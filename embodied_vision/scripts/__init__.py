"""Thin hydra entry points behind the `embodied-vision` subcommands."""
