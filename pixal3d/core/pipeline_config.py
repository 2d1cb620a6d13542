"""``pipeline.json``, the settings file of a model folder, as one typed config.

The file is ``{"name": ..., "args": {...}}`` in the official TRELLIS.2 / Pixal3D layout. ``args`` holds
``models`` (stage key → checkpoint spec), ``<stage>_sampler`` entries (``{"name", "args", "params"}``),
``<kind>_normalization`` (per-channel ``mean`` / ``std`` of a latent), ``default_pipeline_type``,
``image_cond_model`` (official; the Pixal3D pipeline ignores it), ``rembg_model`` and this project's
``image_encoder``, ``image_cond_configs``, ``cascade`` and ``camera_frame_cross_attention`` (``true`` in the
cross-attention ablations of this project's models: their cross-attention flows were trained in the camera
frame on the image tokens, so the pipeline may run them; TRELLIS.2's canonical-frame flows stay refused) and
``silhouette_constraint`` (``true`` in this project's models: generations are carved to and snapped onto the input
silhouettes, :mod:`pixal3d.core.silhouette`). Entries this project does not use are kept
verbatim in :attr:`PipelineConfig.other`.

:meth:`PipelineConfig.read` parses and checks the file once; the pipeline folder reader
(:mod:`pixal3d.models.pipeline_folder`) and every writer (the trainers, the latent statistics, the model
export) go through it, so a written ``pipeline.json`` is one inference can read. A read → write round trip
gives the same JSON, ``args`` keys in the order they were read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from pixal3d.core.cascade import OFFICIAL_CASCADE, CascadeConfig
from pixal3d.errors import UserError
from pixal3d.utils.files import write_json

#: the settings file of a model folder
PIPELINE_FILE = "pipeline.json"
#: the name this project writes (the official Pixal3D file still says ``Trellis2ImageTo3DPipeline``)
PIPELINE_NAME = "Pixal3DImageTo3DPipeline"
_SAMPLER, _NORMALIZATION = "_sampler", "_normalization"
_NAMED = ("models", "default_pipeline_type", "image_cond_model", "rembg_model", "image_encoder",
          "image_cond_configs", "cascade", "camera_frame_cross_attention", "silhouette_constraint")


@dataclass
class PipelineConfig:
    """The parsed ``pipeline.json`` of a model folder.

    ``models``: stage key → checkpoint spec (a path relative to the folder, an absolute path or a Hub id);
    ``samplers``: stage (``sparse_structure``, ``shape_slat``, ``tex_slat``) → ``{"name", "args", "params"}``;
    ``normalization``: latent kind (``shape_slat``, ``tex_slat``) → ``{"mean": [C], "std": [C]}`` floats;
    ``cascade``: the cascade geometry, or ``None`` when the file states none (the official one applies);
    the spec dicts (``image_encoder`` …) are ``None`` when absent. ``key_order`` is the order of the ``args``
    keys read, which :meth:`to_json` keeps (new keys follow).
    """

    name: str = PIPELINE_NAME
    models: dict[str, str] = field(default_factory=dict)
    samplers: dict[str, dict] = field(default_factory=dict)
    normalization: dict[str, dict] = field(default_factory=dict)
    default_pipeline_type: str | None = None
    image_cond_model: dict | None = None
    rembg_model: dict | None = None
    image_encoder: dict | None = None
    image_cond_configs: dict[str, dict] | None = None
    cascade: CascadeConfig | None = None
    camera_frame_cross_attention: bool | None = None
    silhouette_constraint: bool | None = None
    other: dict[str, Any] = field(default_factory=dict)
    key_order: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @property
    def cascade_config(self) -> CascadeConfig:
        """The cascade this folder runs: its own ``cascade`` or the official one."""
        return self.cascade or OFFICIAL_CASCADE

    @classmethod
    def from_json(cls, data: Any, source: str | Path = "pipeline.json") -> "PipelineConfig":
        """Parse a loaded ``pipeline.json`` object; :class:`UserError` naming ``source`` when it is malformed."""
        if not isinstance(data, dict) or not isinstance(data.get("args", {}), dict):
            raise UserError(f"{source} must be a JSON object with an \"args\" object")
        args = data.get("args", {})
        models = args.get("models", {})
        if not isinstance(models, dict) or not all(isinstance(v, str) for v in models.values()):
            raise UserError(f"{source}: args.models must map stage names to checkpoint paths")
        named = {key: args[key] for key in _NAMED if args.get(key) is not None}
        samplers, normalization, other = {}, {}, {}
        for key, value in args.items():
            if key in _NAMED:
                continue
            if key.endswith(_SAMPLER) and isinstance(value, dict):
                samplers[key[: -len(_SAMPLER)]] = value
            elif key.endswith(_NORMALIZATION) and isinstance(value, dict):
                normalization[key[: -len(_NORMALIZATION)]] = value
            else:
                other[key] = value
        cascade = CascadeConfig.from_args(named["cascade"]) if named.get("cascade") else None
        for flag in ("camera_frame_cross_attention", "silhouette_constraint"):
            if named.get(flag) is not None and not isinstance(named[flag], bool):
                raise UserError(f"{source}: args.{flag} must be true or false, got {named[flag]!r}")
        return cls(name=str(data.get("name", "")), models=dict(models), samplers=samplers, normalization=normalization,
                   default_pipeline_type=named.get("default_pipeline_type"), image_cond_model=named.get("image_cond_model"),
                   rembg_model=named.get("rembg_model"), image_encoder=named.get("image_encoder"),
                   image_cond_configs=named.get("image_cond_configs"), cascade=cascade,
                   camera_frame_cross_attention=named.get("camera_frame_cross_attention"),
                   silhouette_constraint=named.get("silhouette_constraint"), other=other,
                   key_order=tuple(args))

    @classmethod
    def read(cls, path: str | Path) -> "PipelineConfig":
        """Read and parse ``path``; :class:`UserError` when it is unreadable or malformed."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read {path}: {exc} (not valid JSON: download or restore the file)") from exc
        return cls.from_json(data, path)

    def settings(self) -> dict[str, Any]:
        """The ``args`` entries other than ``models``, as written in the file."""
        entries = {f"{stage}{_SAMPLER}": spec for stage, spec in self.samplers.items()}
        entries.update({f"{kind}{_NORMALIZATION}": spec for kind, spec in self.normalization.items()})
        for key in _NAMED[1:]:
            value = getattr(self, key)
            if value is not None:
                entries[key] = value.to_args() if isinstance(value, CascadeConfig) else value
        entries.update(self.other)
        return entries

    def with_settings(self, settings: Mapping[str, Any], name: str | None = None) -> "PipelineConfig":
        """A copy with the ``args`` entries of ``settings`` set (``models`` too, when given) and, when given, ``name``."""
        args = {"models": self.models, **self.settings(), **settings}
        order = self.key_order + tuple(k for k in settings if k not in self.key_order)
        return replace(self.from_json({"name": self.name if name is None else name, "args": args}), key_order=order)

    def to_json(self) -> dict[str, Any]:
        """The ``pipeline.json`` object: ``{"name", "args"}``, ``args`` keys in :attr:`key_order`, then the others."""
        entries = {**self.settings(), "models": self.models}
        ordered = {key: entries[key] for key in self.key_order if key in entries}
        ordered.update({key: value for key, value in entries.items() if key not in ordered})
        return {"name": self.name, "args": ordered}

    def write(self, path: str | Path) -> None:
        """Write :meth:`to_json` to ``path`` atomically."""
        write_json(path, self.to_json())
