"""TWS socket framing: the handshake, length-prefixed messages and field encoding."""

from __future__ import annotations

import asyncio
import math
import re
import struct
from collections.abc import Sequence

API_PREFIX = b"API\0"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
UNSET_DOUBLE_TEXT = "1.7976931348623157E308"

Field = str | int | float | bool | None

_VERSION_RE = re.compile(r"^v(\d+)(?:\.\.(\d+))?")


class ProtocolError(Exception):
    """The peer sent something that is not the TWS API protocol."""


def format_field(value: Field) -> str:
    """Encode one field the way TWS does: bools as 0/1, None as empty, floats compactly."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        if math.isinf(value) or math.isnan(value):
            return ""
        return repr(round(value, 8))
    return str(value)


def encode_message(fields: Sequence[Field]) -> bytes:
    """A length-prefixed frame of NUL-terminated fields."""
    payload = "".join(format_field(f) + "\0" for f in fields).encode()
    return struct.pack(">I", len(payload)) + payload


def decode_payload(payload: bytes) -> list[str]:
    """Split a frame's payload into its fields (the trailing NUL yields no field)."""
    fields = payload.decode(errors="backslashreplace").split("\0")
    if fields and fields[-1] == "":
        fields.pop()
    return fields


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """Read one length-prefixed frame; raises IncompleteReadError at end of stream."""
    header = await reader.readexactly(4)
    (size,) = struct.unpack(">I", header)
    if size > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"frame of {size} bytes is too large")
    return await reader.readexactly(size)


async def read_handshake(reader: asyncio.StreamReader) -> tuple[int, int]:
    """Read the client's greeting and return its (min, max) client version."""
    prefix = await reader.readexactly(len(API_PREFIX))
    if prefix != API_PREFIX:
        raise ProtocolError(f"expected API prefix, got {prefix!r}")
    text = (await read_frame(reader)).decode(errors="replace")
    match = _VERSION_RE.match(text)
    if not match:
        raise ProtocolError(f"bad version range {text!r}")
    low = int(match.group(1))
    high = int(match.group(2) or low)
    return low, high


def choose_version(client_min: int, client_max: int, server_max: int) -> int | None:
    """The highest version both sides speak, or None when the ranges do not overlap."""
    version = min(client_max, server_max)
    return version if version >= client_min else None
