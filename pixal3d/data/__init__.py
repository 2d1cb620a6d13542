"""Training data: procedural textured assets (:mod:`pixal3d.data.synth`) and dataset building."""
