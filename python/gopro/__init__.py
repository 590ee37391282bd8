"""The GoPro binary TCP protocol, from its Rust core.

- the codec: :class:`Command`, :class:`Frame`, :func:`encode`, :func:`decode`,
  :class:`Decoder`;
- a blocking :class:`Client` and an asyncio :class:`AsyncClient`;
- a :class:`Server` whose handlers are Python functions or coroutines.
"""

from gopro._gopro import (
    DEFAULT_MAX_BODY,
    HEADER_LEN,
    MAGIC,
    VERSION,
    AsyncClient,
    BadMagic,
    Client,
    Command,
    ConnectError,
    ConnectionClosed,
    Decoder,
    Frame,
    FrameError,
    FrameTooLarge,
    GoAway,
    GoproError,
    IncompleteFrame,
    ProtocolError,
    Server,
    ServerError,
    Timeout,
    UnsupportedVersion,
    __version__,
    decode,
    encode,
)

__all__ = [
    "DEFAULT_MAX_BODY",
    "HEADER_LEN",
    "MAGIC",
    "VERSION",
    "AsyncClient",
    "BadMagic",
    "Client",
    "Command",
    "ConnectError",
    "ConnectionClosed",
    "Decoder",
    "Frame",
    "FrameError",
    "FrameTooLarge",
    "GoAway",
    "GoproError",
    "IncompleteFrame",
    "ProtocolError",
    "Server",
    "ServerError",
    "Timeout",
    "UnsupportedVersion",
    "__version__",
    "decode",
    "encode",
]
