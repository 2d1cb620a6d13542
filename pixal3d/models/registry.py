"""Model classes by their official names, so a checkpoint's ``{"name", "args"}`` JSON builds it.

Model modules decorate their classes with :func:`register_model`; :func:`model_class` imports the
model modules on first use so every official name resolves.
"""

from __future__ import annotations

import importlib

from torch import nn

from pixal3d.errors import UserError

_MODELS: dict[str, type[nn.Module]] = {}

#: modules whose import registers the model classes
MODEL_MODULES = (
    "pixal3d.models.ss_flow",
    "pixal3d.models.slat_flow",
    "pixal3d.models.ss_vae",
    "pixal3d.models.sc_vae",
)


def register_model(*names: str):
    """Class decorator: make the class buildable under each of ``names`` (official class names)."""

    def decorate(cls):
        for name in names or (cls.__name__,):
            _MODELS[name] = cls
        return cls

    return decorate


def _import_model_modules() -> None:
    for module in MODEL_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def model_class(name: str) -> type[nn.Module]:
    """The class registered under ``name``; :class:`UserError` listing the known names otherwise."""
    if name not in _MODELS:
        _import_model_modules()
    if name not in _MODELS:
        raise UserError(f"unknown model class {name!r} (known: {', '.join(sorted(_MODELS))})")
    return _MODELS[name]


def build_model(name: str, args: dict) -> nn.Module:
    """Instantiate the model class ``name`` with keyword ``args`` (as in a checkpoint JSON)."""
    cls = model_class(name)
    try:
        return cls(**args)
    except TypeError as exc:
        raise UserError(f"cannot build {name} from its args: {exc}") from exc
