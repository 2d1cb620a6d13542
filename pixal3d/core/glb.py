"""Reading and rewriting the JSON chunk of binary glTF (GLB) files — the one reader every module uses.

A GLB starts with a 12-byte header (``glTF``, version, total length) and its first chunk (length, type ``JSON``);
the JSON follows at byte 20. Only the header and that chunk are read from a file, so asking a large GLB for its
accessors or materials costs no more than the JSON itself.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

from pixal3d.errors import UserError

#: the chunk type of the JSON chunk (``JSON`` as a little-endian uint32)
JSON_CHUNK = 0x4E4F534A
#: the largest JSON chunk read (a GLB's JSON is kilobytes to a few megabytes)
MAX_JSON_BYTES = 64 << 20


def read_glb_json(source: str | os.PathLike | bytes, complete: bool = False) -> dict[str, Any]:
    """The JSON chunk of a binary glTF file (a path, or the file's bytes) as a dict.

    ``complete``: also require glTF version 2 and a header length equal to the file's size (a fully written file).
    :class:`UserError` (one line naming the file) for anything else: unreadable, not GLB, first chunk not JSON,
    truncated, JSON that does not parse.
    """
    name = "data" if isinstance(source, (bytes, bytearray)) else str(source)
    try:
        if isinstance(source, (bytes, bytearray)):
            head, size = bytes(source[:20]), len(source)
            chunk = lambda n: bytes(source[20:20 + n])  # noqa: E731
            text = _parse(name, head, size, complete, chunk)
        else:
            with open(Path(source), "rb") as f:
                head, size = f.read(20), os.fstat(f.fileno()).st_size
                text = _parse(name, head, size, complete, f.read)
        tree = json.loads(text.decode("utf-8"))
    except OSError as exc:
        raise UserError(f"cannot read {name}: {exc}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{name}: the GLB's JSON chunk does not parse ({exc})") from exc
    if not isinstance(tree, dict):
        raise UserError(f"{name}: the GLB's JSON chunk is not an object")
    return tree


def _parse(name: str, head: bytes, size: int, complete: bool, read):
    """Check a GLB header whose first chunk is JSON and return ``read(length)`` of that chunk."""
    if len(head) < 20 or head[:4] != b"glTF":
        raise UserError(f"{name} is not a binary glTF (GLB) file")
    version, total, length, kind = struct.unpack_from("<IIII", head, 4)
    if kind != JSON_CHUNK:
        raise UserError(f"{name}: first GLB chunk is not JSON")
    if complete and (version != 2 or total != size):
        raise UserError(f"{name} is truncated or not glTF 2.0 (header says {total} bytes, version {version}; "
                        f"the file has {size})")
    if length > MAX_JSON_BYTES or 20 + length > size:
        raise UserError(f"{name}: the GLB's JSON chunk ({length} bytes) does not fit the file")
    return read(length)


def replace_glb_json(data: bytes, gltf: dict[str, Any]) -> bytes:
    """GLB ``data`` with its JSON chunk replaced by ``gltf`` (compact JSON, space-padded to 4 bytes); the chunks after
    it (the BIN chunk) are kept byte for byte and the header's total length is updated."""
    length = _parse("data", bytes(data[:20]), len(data), False, lambda n: n)  # the header's checks, no JSON parse
    text = json.dumps(gltf, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 4)
    body = struct.pack("<II", len(text), JSON_CHUNK) + text + bytes(data[20 + length:])
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body
