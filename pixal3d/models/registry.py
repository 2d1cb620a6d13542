"""Model classes by their official names, so a checkpoint's ``{"name", "args"}`` JSON builds it.

Model modules decorate their classes with :func:`register_model`; :func:`model_class` imports the
model modules on first use so every official name resolves. :func:`build_model` checks the JSON
``args`` against the constructor's signature first, so a checkpoint with a wrong or missing argument
(or a value the class rejects with ``ValueError``) gives one clear :class:`~pixal3d.errors.UserError`,
while any other error inside a constructor still shows its traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect

import torch
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


def known_models() -> list[str]:
    """Sorted official class names that can be built here."""
    _import_model_modules()
    return sorted(_MODELS)


def model_class(name: str) -> type[nn.Module]:
    """The class registered under ``name``; :class:`UserError` listing the known names otherwise."""
    if name not in _MODELS:
        _import_model_modules()
    if name not in _MODELS:
        raise UserError(f"unknown model class {name!r} (known: {', '.join(sorted(_MODELS))})")
    return _MODELS[name]


def build_model(name: str, args: dict, device: torch.device | str | None = None) -> nn.Module:
    """Instantiate the model class ``name`` with keyword ``args`` (as in a checkpoint JSON).

    With ``device='meta'`` the parameters take no memory and no random numbers are drawn; this is how
    checkpoints are checked and loaded (:mod:`pixal3d.models.loading`).
    """
    cls = model_class(name)
    if not isinstance(args, dict):
        raise UserError(f"cannot build {name}: its args must be a JSON object, got {type(args).__name__}")
    try:
        inspect.signature(cls).bind(**args)
    except TypeError as exc:
        raise UserError(f"cannot build {name} from its args: {exc}") from exc
    context = torch.device(device) if device is not None else contextlib.nullcontext()
    with context:
        try:
            return cls(**args)
        except ValueError as exc:  # constructors reject unsupported configurations with ValueError
            raise UserError(f"cannot build {name} from its args: {exc}") from exc
        except TypeError as exc:  # an argument a **kwargs constructor passes on and its base rejects
            if "argument" not in str(exc):
                raise
            raise UserError(f"cannot build {name} from its args: {exc}") from exc
