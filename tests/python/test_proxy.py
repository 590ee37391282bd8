"""The PROXY protocol from Python: `gopro.Server(proxy_protocol=[...])` over
the core's, with v1 and v2 headers sent from raw sockets as a balancer sends
them (header and frame in one write); the client they name in
`current_connection()` for plain and coroutine handlers; untrusted,
header-less, invalid and late connections refused; bad arguments refused
with the right exception; the counters; `python -m gopro serve
--proxy-protocol`."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import sys
import time
from typing import Any, Iterator

import gopro
import pytest
from conftest import Process

WHO = 17  # answered "peer local" as current_connection() gives them
WHO_ASYNC = 18  # the same, from a coroutine handler
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1 = b"PROXY TCP4 203.0.113.7 198.51.100.1 51234 8888\r\n"


def v2(command: int, family: int, addresses: bytes) -> bytes:
    """A v2 header: version 2 with `command` (0 LOCAL, 1 PROXY)."""
    head = V2_SIGNATURE + bytes([0x20 | command, family])
    return head + struct.pack("!H", len(addresses)) + addresses


def v2_tcp4(src: str, sport: int, dst: str, dport: int) -> bytes:
    addresses = socket.inet_aton(src) + socket.inet_aton(dst)
    return v2(1, 0x11, addresses + struct.pack("!HH", sport, dport))


def v2_tcp6(src: str, sport: int, dst: str, dport: int) -> bytes:
    addresses = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
    return v2(1, 0x21, addresses + struct.pack("!HH", sport, dport))


@contextlib.contextmanager
def proxied(trusted: list[str], **kwargs: Any) -> Iterator[gopro.Server]:
    server = gopro.Server("127.0.0.1:0", grace=1.0, proxy_protocol=trusted, **kwargs)

    @server.handler(WHO)
    def who(frame: gopro.Frame) -> bytes:
        conn = gopro.current_connection()
        return f"{conn.peer} {conn.local}".encode()

    @server.handler(WHO_ASYNC)
    async def who_async(frame: gopro.Frame) -> bytes:
        conn = gopro.current_connection()
        return f"{conn.peer} {conn.local}".encode()

    with server:
        yield server


def connect(server: gopro.Server, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(
        ("127.0.0.1", server.port), timeout=10, source_address=(source, 0)
    )


def ask(sock: socket.socket, header: bytes = b"", command: int = WHO) -> str:
    """Sends `header` and a frame in one write; the reply's body."""
    sock.sendall(header + gopro.encode(command, b""))
    decoder = gopro.Decoder()
    while True:
        frames = decoder.frames()
        if frames:
            assert frames[0].command == command
            return frames[0].body.decode()
        data = sock.recv(4096)
        assert data, "closed without a reply"
        decoder.feed(data)


def refused(sock: socket.socket, sent: bytes = b"") -> None:
    """The server closes the connection without sending a byte."""
    with sock:
        with contextlib.suppress(OSError):  # it may have closed already
            sock.sendall(sent)
        try:
            assert sock.recv(1) == b""
        except ConnectionResetError:
            pass


def settled(server: gopro.Server, headers: int, refusals: int) -> dict[str, Any]:
    """The stats once the server has counted what the clients saw."""
    deadline = time.monotonic() + 10
    while True:
        stats = server.stats()
        done = (stats["proxy_headers"], stats["errors"]["proxy"]) == (headers, refusals)
        if done or time.monotonic() > deadline:
            return stats
        time.sleep(0.01)


def test_the_handler_sees_the_client_of_a_v1_or_v2_header() -> None:
    with proxied(["127.0.0.1/32", "10.0.0.0/8"]) as server:
        with connect(server) as sock:
            assert ask(sock, V1) == "203.0.113.7:51234 198.51.100.1:8888"
            # The header came once; the connection goes on with frames.
            assert ask(sock, command=WHO_ASYNC) == "203.0.113.7:51234 198.51.100.1:8888"
        with connect(server) as sock:
            header = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 8888\r\n"
            assert ask(sock, header, WHO_ASYNC) == "[2001:db8::7]:4000 [2001:db8::1]:8888"
        with connect(server) as sock:
            header = v2_tcp4("192.0.2.44", 40000, "10.0.0.1", 8888)
            assert ask(sock, header) == "192.0.2.44:40000 10.0.0.1:8888"
        with connect(server) as sock:
            header = v2_tcp6("2001:db8::9", 5, "2001:db8::1", 8888)
            assert ask(sock, header, WHO_ASYNC) == "[2001:db8::9]:5 [2001:db8::1]:8888"
        # LOCAL (a balancer's health check) keeps the connection's addresses.
        with connect(server) as sock:
            own = "%s:%d" % sock.getsockname()
            assert ask(sock, v2(0, 0x00, b"")) == f"{own} {server.local_addr}"
        assert settled(server, 5, 0)["proxy_headers"] == 5


def test_untrusted_headerless_invalid_and_late_connections_are_refused() -> None:
    # Trusts 127.0.0.2 only: a client from 127.0.0.1 is refused even with a
    # valid header, so that nobody can claim an address.
    with proxied(["127.0.0.2"], read_timeout=0.5) as server:
        refused(connect(server, "127.0.0.1"), V1)
        # No header: a frame longer than what the server reads to decide.
        frame = gopro.encode(gopro.Command.MESSAGE, b"no header here")
        refused(connect(server, "127.0.0.2"), frame)
        refused(connect(server, "127.0.0.2"), b"PROXY TCP4 not an address 1 2\r\n")
        refused(connect(server, "127.0.0.2"), v2(1, 0x11, b"\x01\x02"))  # addresses cut short
        # Half a header, then silence: closed at the read timeout.
        started = time.monotonic()
        refused(connect(server, "127.0.0.2"), b"PROXY TCP4 1.2.")
        assert 0.4 <= time.monotonic() - started < 5
        # A gopro client cannot send a header: it gets no reply.
        with gopro.Client(server.local_addr, timeout=5) as client:
            with pytest.raises(gopro.ConnectionClosed):
                client.request(gopro.Command.MESSAGE, b"without a header, longer than 15 bytes")
        # Meanwhile a trusted balancer is served.
        with connect(server, "127.0.0.2") as sock:
            assert ask(sock, V1) == "203.0.113.7:51234 198.51.100.1:8888"
        stats = settled(server, 1, 6)
    assert (stats["proxy_headers"], stats["errors"]["proxy"]) == (1, 6)
    assert stats["frames_in"] == 1 and stats["errors"]["protocol"] == 0


@pytest.mark.parametrize(
    "trusted, named",
    [
        (["10.0.0.0/33"], '"10.0.0.0/33"'),
        (["127.0.0.1", "balancer.example"], '"balancer.example"'),
        (["::1/129"], '"::1/129"'),
        ([""], '""'),
        ([], "at least one"),
    ],
)
def test_a_bad_network_is_a_config_error(trusted: list[str], named: str) -> None:
    with pytest.raises(gopro.ConfigError) as caught:
        gopro.Server("127.0.0.1:0", proxy_protocol=trusted)
    assert caught.value.setting == "proxy_protocol"
    assert str(caught.value).startswith("invalid proxy_protocol: ")
    assert named in str(caught.value)


def test_the_argument_is_a_list_of_str() -> None:
    # A lone str would be iterated as characters, or "a,b" taken as one
    # network: refused before the core sees it.
    lone = r"list of addresses or networks, e\.g\. \['10\.0\.0\.0/8'\], not a str"
    with pytest.raises(TypeError, match=lone):
        gopro.Server("127.0.0.1:0", proxy_protocol="10.0.0.0/8")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a bytes"):
        gopro.Server("127.0.0.1:0", proxy_protocol=b"10.0.0.0/8")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not int"):
        gopro.Server("127.0.0.1:0", proxy_protocol=8)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"proxy_protocol\[1\] must be a str"):
        gopro.Server("127.0.0.1:0", proxy_protocol=["10.0.0.0/8", 127])  # type: ignore[list-item]
    # Any iterable of str: a tuple, a generator; spaces around items are the
    # core's to trim; None is off.
    gopro.Server("127.0.0.1:0", proxy_protocol=("10.0.0.0/8", " ::1 "))
    gopro.Server("127.0.0.1:0", proxy_protocol=(n for n in ["127.0.0.1"]))
    with gopro.Server("127.0.0.1:0", proxy_protocol=None) as server:
        with gopro.Client(server.local_addr, timeout=5) as client:
            assert client.request(gopro.Command.MESSAGE, b"hi").body == b"Server says: hi"
        assert server.stats()["proxy_headers"] == server.stats()["errors"]["proxy"] == 0


def test_cli_serve_with_the_proxy_protocol() -> None:
    server = Process(
        [sys.executable, "-m", "gopro", "serve", "--listen", "127.0.0.1:0", "--grace", "1s",
         "--proxy-protocol", "--trusted-proxies", "10.0.0.0/8,127.0.0.1/32"],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(V1 + gopro.encode(gopro.Command.MESSAGE, b"via a balancer"))
            decoder = gopro.Decoder()
            while not (frames := decoder.frames()):
                data = sock.recv(4096)
                assert data, "closed without a reply"
                decoder.feed(data)
            assert frames[0].body == b"Server says: via a balancer"
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            refused(sock, gopro.encode(gopro.Command.MESSAGE, b"no header here"))
    finally:
        assert server.stop() == 0

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gopro", "serve", "--listen", "127.0.0.1:0", *args],
            capture_output=True, text=True, timeout=60,
        )

    out = cli("--proxy-protocol")
    assert out.returncode == 2 and "go together" in out.stderr
    out = cli("--trusted-proxies", "127.0.0.1")
    assert out.returncode == 2 and "go together" in out.stderr
    out = cli("--proxy-protocol", "--trusted-proxies", "10.0.0.0/8,nonsense")
    assert out.returncode == 1
    assert 'invalid proxy_protocol: "nonsense" is not an address or a network' in out.stderr
