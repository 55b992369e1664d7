"""Thin Hydra entrypoints: each composes its config and calls one library function."""
