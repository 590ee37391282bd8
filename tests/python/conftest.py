"""Shared fixtures: the Rust `gopro serve`, the Go peer, Python servers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import gopro
import pytest

ROOT = Path(__file__).resolve().parents[2]
GOPRO_BIN = Path(os.environ.get("GOPRO_BIN", ROOT / "target" / "release" / "gopro"))
GO_BIN = Path(os.environ.get("GOPRO_GO_BIN", ROOT / "interop" / "go" / "bin"))
LISTENING = re.compile(r"listening on (\S+:\d+)")


def pytest_configure(config: pytest.Config) -> None:
    """With GOPRO_INSTALLED_IN set (scripts/test-python.sh sets it to the
    site-packages of the venv it installed the wheel into), refuse to test
    any other copy of gopro, such as python/gopro of the source tree."""
    installed_in = os.environ.get("GOPRO_INSTALLED_IN")
    if not installed_in:
        return
    site = Path(installed_in).resolve()
    for module in (gopro, gopro._gopro):
        origin = Path(module.__file__ or "").resolve()
        if not origin.is_relative_to(site):
            raise pytest.UsageError(f"{module.__name__} is imported from {origin}, not {site}")


class Process:
    """A server process whose stderr is drained (and kept) by a thread."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.lines: list[str] = []
        found = threading.Event()
        self.addr = ""

        def drain() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.lines.append(line)
                match = LISTENING.search(re.sub(r"\x1b\[[0-9;]*m", "", line))
                if match and not self.addr:
                    self.addr = match.group(1)
                    found.set()
            found.set()

        self.thread = threading.Thread(target=drain, daemon=True)
        self.thread.start()
        if not found.wait(20) or not self.addr:
            self.stop()
            raise RuntimeError(f"{args} did not start: {''.join(self.lines)}")

    @property
    def port(self) -> int:
        return int(self.addr.rsplit(":", 1)[1])

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            rc = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.thread.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return rc


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not built")
    return path


@pytest.fixture
def rust_server() -> Iterator[Process]:
    """`gopro serve` on a free port."""
    server = Process([str(need(GOPRO_BIN)), "serve", "--listen", "127.0.0.1:0", "--grace", "2s"])
    yield server
    server.stop()


@pytest.fixture
def py_server() -> Iterator[gopro.Server]:
    """A Python server with a few handlers, started on a free port."""
    server = gopro.Server("127.0.0.1:0", grace=2.0)

    @server.handler(16)
    def echo(frame: gopro.Frame) -> bytes:
        return frame.body

    @server.handler(17)
    async def later(frame: gopro.Frame) -> gopro.Frame:
        import asyncio

        await asyncio.sleep(0.01)
        return gopro.Frame(18, b"later " + frame.body)

    @server.handler(19)
    def fails(frame: gopro.Frame) -> bytes:
        raise RuntimeError("handler failed on purpose")

    @server.handler(20)
    def silent(frame: gopro.Frame) -> None:
        return None

    server.start()
    yield server
    server.shutdown()
    assert server.wait(10)


def python() -> str:
    return sys.executable
