"""The GoPro binary TCP protocol, from its Rust core.

- the codec: :class:`Command`, :class:`Frame`, :func:`encode`, :func:`decode`,
  :class:`Decoder`;
- a blocking :class:`Client` and an asyncio :class:`AsyncClient`;
- a :class:`Server` whose handlers are Python functions or coroutines.

Every name is the native module's (``gopro._gopro``), whose ``__all__`` is
the one list of them.
"""

from gopro import _gopro
from gopro._gopro import *  # noqa: F403

__all__ = _gopro.__all__
