"""Import an object named ``package.module:attribute``: the one parser of such paths (spec
``callable:`` sources, notifier paths), so every caller gives the same clear error."""

from __future__ import annotations

import importlib
from typing import Any


def import_object(path: str) -> Any:
    """Return the attribute ``attr`` of module ``package.module`` for ``"package.module:attr"``.

    :raises ValueError: the path is malformed, the module does not import, or it has no such attribute
        (the message names the path and the cause).
    """
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"{path!r} must look like 'package.module:attribute'")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{path!r}: {exc}") from None
