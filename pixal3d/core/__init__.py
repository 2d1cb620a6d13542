"""The types and formats every stage shares, below everything else of the package.

* :mod:`pixal3d.core.camera` — the camera model (pinhole, the official front camera) and the frames;
* :mod:`pixal3d.core.asset` — the decoded voxel asset (with its input camera), as written to ``.npz``;
* :mod:`pixal3d.core.render` — the CPU rasteriser that previews, data building and evaluation share, and its view;
* :mod:`pixal3d.core.cascade` — the cascade's geometry a model folder states (:class:`~pixal3d.core.cascade.CascadeConfig`);
* :mod:`pixal3d.core.pipeline_config` — a model folder's ``pipeline.json``, parsed once
  (:class:`~pixal3d.core.pipeline_config.PipelineConfig`).

Nothing here imports another layer of the package except :mod:`pixal3d.utils`, :mod:`pixal3d.ovoxel` and
:mod:`pixal3d.errors`.
"""
