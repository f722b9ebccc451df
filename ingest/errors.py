"""Errors raised by frame sources, and masking of credentials in what they report."""

from __future__ import annotations

import re

from truckcount.redact import SECRET_PARAM

# user:password@ (or user@) right after "scheme://"
_USERINFO = re.compile(r"(?<=://)[^/?#@\s]+@")


class SourceError(RuntimeError):
    """A frame source cannot be opened or read; the message names the source and the problem."""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its type name when it has none: one-line reports."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def mask_url(source: str) -> str:
    """Return ``source`` safe to log: credentials in a URL are replaced by ``***``.

    Hides the ``user:password@`` part and the values of query parameters that commonly carry
    secrets (``password``, ``token``, ``key``, ...). Plain file paths come back unchanged.

    Args:
        source: a file path or a URL such as ``rtsp://user:secret@cam.local/stream1``.

    Returns:
        The same string with secrets masked, e.g. ``rtsp://***@cam.local/stream1``.
    """
    if "://" not in source:
        return source
    masked = _USERINFO.sub("***@", source)
    return SECRET_PARAM.sub(r"\1***", masked)
