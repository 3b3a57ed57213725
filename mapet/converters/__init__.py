"""Checkpoint converters: official MaPeT -> mapet, mapet -> timm, pre-training
checkpoint -> backbone. ``tools/model_converters/*.py`` are their command
lines. Not registered components."""
