"""Named fail points for the fault tests: kill this process at an exact place, deterministically.

Long-running code calls :func:`failpoint` at the places where a crash would hurt most (inside a
training step, between the files of a checkpoint, after each finished data item). Normally it does
nothing. With ``PIXAL3D_FAILPOINT=<name>:<n>`` in the environment, the ``n``-th time (1-based) the
process passes ``<name>`` it sends itself ``SIGKILL`` (``<name>:<n>:int`` sends ``SIGINT`` instead, as
Ctrl-C would). Several points may be given, separated by commas.

Names in use: ``train.step`` (after the backward pass, before the optimiser update),
``checkpoint.weights`` (pipeline folder written, ``trainer_state.pt`` not yet), ``checkpoint.rename``
(checkpoint complete in its temporary folder, not yet renamed), ``checkpoint.latest`` (renamed, the
``latest`` pointer not yet updated), ``synth.item`` (one asset file written), ``build.view`` (one view's
image written, its voxels not yet), ``build.item`` (one asset finished), ``generate.stage`` (each
generation stage finished), ``output.commit`` (an atomic output complete, not yet renamed into place).
"""

from __future__ import annotations

import os
import signal

ENV_VAR = "PIXAL3D_FAILPOINT"

_counts: dict[str, int] = {}


def _targets() -> dict[str, tuple[int, str]]:
    spec = os.environ.get(ENV_VAR, "")
    out = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, rest = item.partition(":")
        count, _, action = rest.partition(":")
        out[name] = (int(count or 1), action or "kill")
    return out


def failpoint(name: str) -> None:
    """Kill (or interrupt) this process here if ``$PIXAL3D_FAILPOINT`` names this point and hit count."""
    if ENV_VAR not in os.environ:
        return
    target = _targets().get(name)
    if target is None:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == target[0]:
        signal.raise_signal(signal.SIGINT if target[1] == "int" else signal.SIGKILL)
