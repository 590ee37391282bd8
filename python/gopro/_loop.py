"""The loop thread for coroutine handlers of a server served without asyncio.

The native server (``gopro._gopro.Server``) imports this module the first
time such a server gets a coroutine from a handler: :func:`start` gives it an
event loop running on a thread of its own, and :func:`stop` ends both once
the server's last connection has finished.
"""

from __future__ import annotations

import asyncio
import threading

__all__ = ["start", "stop"]


def start() -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    """Starts a new event loop on a daemon thread; returns once it runs."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            try:
                # What is still pending is cancelled and awaited, so that
                # every coroutine gets to run its cleanup before the close.
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                if tasks:
                    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    thread = threading.Thread(target=run, name="gopro-handlers", daemon=True)
    thread.start()
    ready.wait()
    return loop, thread


def stop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    """Stops a loop made by :func:`start` and waits for its thread to end."""
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
