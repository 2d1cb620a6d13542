"""The fidelity benchmark (``pixal3d evaluate``): ground truth with known cameras, the model and its
baselines scored by one harness, reports. See :func:`pixal3d.evaluation.runner.evaluate`."""

from pixal3d.evaluation.runner import EvalConfig, evaluate

__all__ = ["EvalConfig", "evaluate"]
