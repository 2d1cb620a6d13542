"""The types and formats every stage shares, below everything else of the package.

* :mod:`pixal3d.core.camera` — the camera model (pinhole, the official front camera) and the frames;
* :mod:`pixal3d.core.asset` — the decoded voxel asset and its camera, as written to ``.npz``;
* :mod:`pixal3d.core.render` — the CPU rasteriser that previews, data building and evaluation share.
* :mod:`pixal3d.core.cascade` — the cascade's geometry a model folder states (:class:`~pixal3d.core.cascade.CascadeConfig`).

Nothing here imports another layer of the package except :mod:`pixal3d.utils`, :mod:`pixal3d.ovoxel` and
:mod:`pixal3d.errors`.
"""
