"""Values read from files as safe terminal text (shared by the CLI and the trace comparison)."""

from __future__ import annotations

import sys
from typing import Any


def clean(value: Any, limit: int = 160) -> str:
    r"""A value read from a file as one safe line of text: every control or invisible character
    escaped (a file cannot clear the screen, recolour or retitle the terminal, or fake lines),
    bytes as hex, long values cut.  Works for any plain data, whatever its type.

    >>> print(clean("title" + chr(27) + "]0;pwned" + chr(7)))
    title\x1b]0;pwned\x07
    """
    if isinstance(value, str):
        text = value
    elif isinstance(value, bytes):
        text = value[: limit // 2].hex()
    elif isinstance(value, int) and not isinstance(value, bool):
        text = str(value) if value.bit_length() <= 512 else f"<integer of {value.bit_length()} bits>"
    elif isinstance(value, list):
        more = ", ..." if len(value) > 16 else ""
        text = "[" + ", ".join(clean(item, limit) for item in value[:16]) + more + "]"
    elif isinstance(value, dict):
        items = [f"{clean(key, limit)}: {clean(item, limit)}" for key, item in list(value.items())[:16]]
        text = "{" + ", ".join(items) + (", ...}" if len(value) > 16 else "}")
    else:
        text = f"<{type(value).__name__}>"
    escaped = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return escaped if len(escaped) <= limit else escaped[: limit - 3] + "..."


def emit(text: str, stream: Any = None) -> None:
    """Print ``text``, escaping what the stream's encoding cannot show (LANG=C: ASCII only)."""
    stream = sys.stdout if stream is None else stream
    encoding = getattr(stream, "encoding", None) or "utf-8"
    print(text.encode(encoding, "backslashreplace").decode(encoding), file=stream)
