"""The GoPro binary TCP protocol, from its Rust core.

- the codec: :class:`Command`, :class:`Frame`, :func:`encode`, :func:`decode`,
  :class:`Decoder`;
- a blocking :class:`Client` and an asyncio :class:`AsyncClient`;
- a :class:`Server` whose handlers are Python functions or coroutines.

Every name is the native module's (``gopro._gopro``), whose ``__all__`` is
the one list of them.
"""

import warnings
from typing import TYPE_CHECKING

from gopro import _gopro
from gopro._gopro import *  # noqa: F403

__all__ = _gopro.__all__

# Names of earlier versions, for the same classes: importable, with a warning.
_RENAMED = {"FrameTooLarge": "BodyTooLarge", "IncompleteFrame": "UnexpectedEof"}

if TYPE_CHECKING:
    FrameTooLarge = _gopro.BodyTooLarge
    IncompleteFrame = _gopro.UnexpectedEof


def __getattr__(name: str) -> object:
    new = _RENAMED.get(name)
    if new is None:
        raise AttributeError(f"module 'gopro' has no attribute {name!r}")
    warnings.warn(
        f"gopro.{name} is deprecated: it is gopro.{new}", DeprecationWarning, stacklevel=2
    )
    return getattr(_gopro, new)
