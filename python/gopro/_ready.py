"""The awaitable of an asyncio client call that finished at once.

Awaiting a native coroutine hands over its value directly, where an
awaitable made in Rust would raise ``StopIteration(value)``, which pyo3 makes
into an exception object (before Python 3.12). The native client
(``gopro._gopro.AsyncClient``) calls :func:`call_result` for such a call.
"""

from __future__ import annotations

from typing import TypeVar

__all__ = ["call_result"]

_T = TypeVar("_T")


async def call_result(value: _T) -> _T:
    """Returns ``value`` when awaited."""
    return value
