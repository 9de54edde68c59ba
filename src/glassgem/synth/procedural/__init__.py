"""Procedural glass scenes: geometry (glass_geometry.py), looks (glass_effects.py), layouts (glass_scene.py),
backgrounds.py, occluders.py, and the dataset writer `glassgem synth procedural` runs (pipeline.py)."""
