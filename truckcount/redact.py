"""Which parts of a URL are credentials: shared by the camera and the database URL masking."""

from __future__ import annotations

import re

_SECRET_WORDS = r"password|passwd|pwd|pass|secret|token|key|auth|signature"
_SECRET_NAME = re.compile(rf"(?i){_SECRET_WORDS}")

SECRET_PARAM = re.compile(rf"(?i)([?&;][^=&;#\s]*(?:{_SECRET_WORDS})[^=&;#\s]*=)[^&;#\s]*")
"""A query parameter holding a credential (``?password=x``, ``&sslpassword=x``, ``&api_key=x``);
group 1 is everything up to its value."""


def is_secret_param(name: str) -> bool:
    """Whether a URL query parameter of this name carries a credential (``password``,
    ``sslpassword``, ``token``, ``api_key``, ...): its value is never shown or stored."""
    return _SECRET_NAME.search(name) is not None
