"""The Python server: handlers, errors, shutdown, Ctrl-C, and the Rust and
Go clients against it; `python -m gopro` against both servers."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import gopro
import pytest
from conftest import GO_BIN, GOPRO_BIN, ROOT, Process, need


def test_handlers(py_server: gopro.Server) -> None:
    assert py_server.running
    assert py_server.local_addr == f"127.0.0.1:{py_server.port}"
    with gopro.Client(py_server.local_addr, timeout=5) as client:
        assert client.request(16, b"echo") == gopro.Frame(16, b"echo")
        assert client.request(17, b"x") == gopro.Frame(18, b"later x")
        # Defaults from the core: MESSAGE echo, HEARTBEAT, LOGIN without an authenticator.
        assert client.request(1, b"hi").body == b"Server says: hi"
        client.heartbeat()
        client.login(b"anyone")
        with pytest.raises(gopro.ServerError) as info:
            client.request(99, b"")
        assert info.value.reason == "unknown command: 99"
        # A handler returning None sends nothing: the next reply is the next request's.
        client.send(20, b"")
        client.send(16, b"after silence")
        assert client.recv().body == b"after silence"


def test_handler_that_raises(py_server: gopro.Server, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="gopro.server"):
        with gopro.Client(py_server.local_addr, timeout=5) as client:
            with pytest.raises(gopro.ServerError) as info:
                client.request(19, b"")
            assert info.value.reason == "handler failed on purpose"
            # The connection and the server live on.
            assert client.request(16, b"ok").body == b"ok"
    records = [r for r in caplog.records if r.name == "gopro.server"]
    assert records and records[0].exc_info is not None
    assert records[0].exc_info[0] is RuntimeError
    assert "fails" in caplog.text  # the handler's frame is in the traceback


def test_handler_bad_return(caplog: pytest.LogCaptureFixture) -> None:
    server = gopro.Server("127.0.0.1:0")
    server.handler(16, lambda frame: 42)
    server.handler(17, lambda frame: "text")
    server.handler(18, lambda frame: bytearray(b"ba"))
    server.handler(gopro.Command.MESSAGE, lambda frame: memoryview(b"mv"))
    with caplog.at_level(logging.ERROR, logger="gopro.server"), server:
        with gopro.Client(server.local_addr, timeout=5) as client:
            with pytest.raises(gopro.ServerError) as info:
                client.request(16, b"")
            assert "must return bytes" in info.value.reason
            assert client.request(17, b"").body == b"text"
            assert client.request(18, b"").body == b"ba"
            assert client.request(1, b"").body == b"mv"
    assert not server.running


def test_registration_errors() -> None:
    server = gopro.Server("127.0.0.1:0")
    for code in (gopro.Command.LOGIN, gopro.Command.ERROR, gopro.Command.GOAWAY, 5, 15):
        with pytest.raises(gopro.ConfigError, match="16-255, HEARTBEAT or MESSAGE") as info:
            server.handler(code, lambda f: None)
        assert info.value.setting == "handler"
    with pytest.raises(gopro.ConfigError, match="LOGIN goes to the authenticator"):
        server.handler(gopro.Command.LOGIN, lambda f: None)
    with pytest.raises(ValueError):
        server.handler(256)
    with pytest.raises(TypeError):
        server.handler(16, 42)
    with pytest.raises(RuntimeError):
        server.local_addr
    # The core's rules, as ConfigError (a ValueError) naming the setting.
    for settings, name in (
        ({"read_timeout": 0}, "read_timeout"),
        ({"write_timeout": 0.0}, "write_timeout"),
        ({"max_connections": 0}, "max_connections"),
        ({"memory_budget": 100}, "memory_budget"),
    ):
        with pytest.raises(gopro.ConfigError, match=name) as config:
            gopro.Server("127.0.0.1:0", **settings)  # type: ignore[arg-type]
        assert config.value.setting == name
        assert isinstance(config.value, ValueError)
    # Not a number of seconds at all: the conversion's ValueError.
    with pytest.raises(ValueError, match="read_timeout"):
        gopro.Server("127.0.0.1:0", read_timeout=-1)
    # The smallest values the rules allow.
    gopro.Server("127.0.0.1:0", read_timeout=0.001, max_connections=1, grace=0)
    with pytest.raises(gopro.BindError):
        gopro.Server("256.0.0.1:0").start()
    with server:
        with pytest.raises(RuntimeError):
            server.handler(16, lambda f: None)
        with pytest.raises(RuntimeError):
            server.start()


def test_authenticator() -> None:
    server = gopro.Server("127.0.0.1:0")

    @server.authenticator
    def check(credentials: bytes) -> bool:
        if credentials == b"boom":
            raise PermissionError("no such user")
        return credentials == b"user:secret"

    with server, gopro.Client(server.local_addr, timeout=5) as client:
        with pytest.raises(gopro.ServerError) as info:
            client.request(1, b"before login")
        assert info.value.reason == "not authenticated"
        with pytest.raises(gopro.ServerError):
            client.login(b"user:wrong")
        with pytest.raises(gopro.ServerError) as info:
            client.login(b"boom")
        assert "no such user" in info.value.reason
        client.login(b"user:secret")
        assert client.request(1, b"in").body == b"Server says: in"


def test_async_authenticator() -> None:
    server = gopro.Server("127.0.0.1:0")

    @server.authenticator
    async def check(credentials: bytes) -> bool:
        await asyncio.sleep(0.01)
        return credentials == b"ok"

    with server, gopro.Client(server.local_addr, timeout=5) as client:
        with pytest.raises(gopro.ServerError):
            client.login(b"no")
        client.login(b"ok")


def test_shutdown_from_another_thread_and_goaway() -> None:
    server = gopro.Server("127.0.0.1:0", grace=2.0)
    server.start()
    client = gopro.Client(server.local_addr, timeout=5)
    assert client.request(1, b"x").body == b"Server says: x"
    threading.Timer(0.1, server.shutdown).start()
    server.serve_forever()  # returns once the shutdown is done
    assert not server.running
    with pytest.raises((gopro.GoAway, gopro.ConnectionClosed)):
        client.request(1, b"after")
    client.close()


def test_shutdown_from_a_handler() -> None:
    server = gopro.Server("127.0.0.1:0", grace=2.0)

    @server.handler(16)
    def stop(frame: gopro.Frame) -> bytes:
        server.shutdown()
        return b"bye"

    server.start()
    done = threading.Event()

    def serve() -> None:
        server.serve_forever()
        done.set()

    thread = threading.Thread(target=serve)
    thread.start()
    with gopro.Client(server.local_addr, timeout=5) as client:
        # The reply to a request fully received is sent before GOAWAY (SPEC §6).
        assert client.request(16, b"").body == b"bye"
        # A request racing the shutdown is either answered before the
        # GOAWAY (it reached the socket before the connection saw the
        # shutdown) or refused with it; after the GOAWAY, nothing is served.
        try:
            assert client.request(1, b"more").body == b"Server says: more"
            with pytest.raises((gopro.GoAway, gopro.ConnectionClosed)):
                client.request(1, b"again")
        except gopro.GoAway as e:
            assert e.unanswered >= 0
    assert done.wait(10)
    thread.join()


def test_restart() -> None:
    server = gopro.Server("127.0.0.1:0")
    for _ in range(2):
        with server, gopro.Client(server.local_addr, timeout=5) as client:
            assert client.request(1, b"x").body == b"Server says: x"


def test_serve_forever_keyboard_interrupt_in_process() -> None:
    import _thread

    server = gopro.Server("127.0.0.1:0", grace=1.0)
    server.start()
    threading.Timer(0.2, _thread.interrupt_main).start()
    with pytest.raises(KeyboardInterrupt):
        server.serve_forever()
    assert not server.running


SERVE_SCRIPT = textwrap.dedent(
    """
    import sys, gopro
    server = gopro.Server("127.0.0.1:0", grace=5.0)

    @server.handler(16)
    def slow(frame):
        import time
        time.sleep(0.5)
        return b"finished"

    server.start()
    print(server.local_addr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(0)
    sys.exit(3)
    """
)


def test_sigint_stops_gracefully() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE_SCRIPT], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    addr = proc.stdout.readline().strip()
    with gopro.Client(addr, timeout=10) as client:
        client.send(16, b"")
        client.flush()
        time.sleep(0.1)  # the server has the request in hand
        proc.send_signal(signal.SIGINT)
        # The request in progress is answered before the server goes away.
        assert client.recv().body == b"finished"
        # A request that reaches the server while it shuts down is either
        # handled (its reply comes before the GOAWAY) or refused with GOAWAY
        # (SPEC §6): which one depends on timing. The next one after that
        # always meets the GOAWAY or the closed connection.
        with pytest.raises((gopro.GoAway, gopro.ConnectionClosed)):
            for _ in range(2):
                assert client.request(1, b"").body == b"Server says: "
    out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert "interrupted" in out


async def test_async_serve() -> None:
    server = gopro.Server("127.0.0.1:0", grace=2.0)
    loop = asyncio.get_running_loop()
    seen_loops = []

    @server.handler(16)
    async def on_loop(frame: gopro.Frame) -> bytes:
        seen_loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0.01)
        return frame.body.upper()

    async with server:
        client = await gopro.AsyncClient.connect(server.local_addr, timeout=5)
        replies = await asyncio.gather(*(client.request(16, b"abc%d" % i) for i in range(20)))
        assert {r.body for r in replies} == {b"ABC%d" % i for i in range(20)}
        await client.close()
    assert not server.running
    assert seen_loops and all(seen is loop for seen in seen_loops)


async def test_async_serve_forever_task() -> None:
    server = gopro.Server("127.0.0.1:0")
    task = asyncio.ensure_future(server.serve())
    for _ in range(100):
        if server.running and _addr(server):
            break
        await asyncio.sleep(0.01)
    client = await gopro.AsyncClient.connect(server.local_addr)
    assert (await client.request(1, b"x")).body == b"Server says: x"
    server.shutdown()
    await asyncio.wait_for(task, 10)
    await client.close()
    # Cancelling the serving task stops the server too.
    task = asyncio.ensure_future(server.serve())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(200):
        if not server.running:
            break
        await asyncio.sleep(0.01)
    assert not server.running


def _addr(server: gopro.Server) -> str | None:
    try:
        return server.local_addr
    except RuntimeError:
        return None


def test_coroutine_handlers_get_their_own_loop() -> None:
    server = gopro.Server("127.0.0.1:0")
    threads = []

    @server.handler(16)
    async def handler(frame: gopro.Frame) -> bytes:
        threads.append(threading.current_thread().name)
        await asyncio.sleep(0)
        return b"ok"

    with server, gopro.Client(server.local_addr) as client:
        assert client.request(16, b"").body == b"ok"
    assert threads == ["gopro-handlers"]
    # The loop thread stops with the server.
    assert all(t.name != "gopro-handlers" for t in threading.enumerate())


def test_rust_client_against_python_server(py_server: gopro.Server) -> None:
    binary = str(need(GOPRO_BIN))
    out = subprocess.run(
        [binary, "send", "--addr", py_server.local_addr, "hello"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "MESSAGE Server says: hello"
    out = subprocess.run(
        [binary, "send", "--addr", py_server.local_addr, "--command", "16", "raw"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.stdout.strip() == "16 raw"
    out = subprocess.run(
        [binary, "send", "--addr", py_server.local_addr, "--command", "19", "x"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 1
    assert "handler failed on purpose" in out.stderr
    out = subprocess.run(
        [binary, "ping", "--addr", py_server.local_addr, "--count", "2", "--interval", "10ms"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert "2 heartbeats" in out.stdout


@pytest.mark.parametrize("scenario", ["article", "pipeline", "big"])
def test_go_client_against_python_server(py_server: gopro.Server, scenario: str) -> None:
    client = str(need(GO_BIN / "client"))
    out = subprocess.run(
        [client, "-addr", py_server.local_addr, "-scenario", scenario],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"PASS {scenario}" in out.stdout


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gopro", *args], capture_output=True, text=True, timeout=60
    )


def test_cli_send_and_ping_against_rust_server(rust_server: Process) -> None:
    out = run_cli("send", "--addr", rust_server.addr, "hi")
    assert (out.returncode, out.stdout) == (0, "MESSAGE Server says: hi\n")
    out = run_cli("send", "--addr", rust_server.addr, "--command", "42", "hi")
    assert out.returncode == 1
    assert "unknown command: 42" in out.stderr
    out = run_cli("send", "--addr", rust_server.addr, "--command", "0", "")
    assert (out.returncode, out.stdout) == (0, "HEARTBEAT \n")
    out = run_cli("ping", "--addr", rust_server.addr, "--count", "3", "--interval", "5ms")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("HEARTBEAT from") == 3
    assert "3 heartbeats, rtt min/avg/max" in out.stdout
    out = run_cli("send", "--addr", "127.0.0.1:1", "hi")
    assert out.returncode == 1
    assert run_cli("send", "--command", "300", "x").returncode == 2


def test_cli_serve() -> None:
    server = Process(
        [sys.executable, "-m", "gopro", "serve", "--listen", "127.0.0.1:0",
         "--read-timeout", "5s", "--write-timeout", "500ms", "--max-body", "1024",
         "--max-connections", "10", "--grace", "1s"],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        with gopro.Client(server.addr, timeout=5) as client:
            assert client.request(1, b"py").body == b"Server says: py"
            with pytest.raises((gopro.ServerError, gopro.ConnectionClosed)):
                client.request(1, bytes(2000))
        if GOPRO_BIN.exists():
            out = subprocess.run(
                [str(GOPRO_BIN), "send", "--addr", server.addr, "hi"],
                capture_output=True, text=True, timeout=30,
            )
            assert out.stdout == "MESSAGE Server says: hi\n"
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(15) == 0
    finally:
        rc = server.stop()
    assert rc == 0
    assert any("stopped" in line for line in server.lines)


def test_cli_serve_sigterm() -> None:
    server = Process([sys.executable, "-m", "gopro", "serve", "--listen", "127.0.0.1:0"])
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(15) == 0
    server.stop()


def test_cli_help() -> None:
    out = run_cli("--help")
    assert out.returncode == 0
    for command in ("serve", "send", "ping"):
        assert command in out.stdout
    assert run_cli("--version").stdout.strip() == f"gopro {gopro.__version__}"
    assert ROOT.exists()


def test_memory_budget_and_stats() -> None:
    mib = 1024 * 1024
    with pytest.raises(gopro.ConfigError, match="memory_budget"):
        gopro.Server("127.0.0.1:0", max_body=mib, memory_budget=mib + 7)
    gopro.Server("127.0.0.1:0", max_body=mib, memory_budget=mib + 8)
    server = gopro.Server("127.0.0.1:0", max_body=mib, memory_budget=2 * mib + 64)
    with pytest.raises(RuntimeError, match="not started"):
        server.stats()

    @server.handler(16)
    def echo(frame: gopro.Frame) -> bytes:
        return frame.body

    with server:
        stats = server.stats()
        assert stats["memory_budget"] == 2 * mib + 64
        assert stats["bytes_buffered"] == 0
        errors: list[BaseException] = []

        def client(seed: int) -> None:
            try:
                with gopro.Client(server.local_addr, timeout=30) as c:
                    for i in range(3):
                        body = bytes([seed + i]) * (mib - 32)
                        assert c.request(1, body).body == b"Server says: " + body
                        assert c.request(16, body).body == body
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=client, args=(n * 8,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        with gopro.Client(server.local_addr, timeout=5) as c:
            with pytest.raises(gopro.ServerError):
                c.request(99, b"")
        deadline = time.monotonic() + 10
        while server.stats()["connections"] > 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        stats = server.stats()
    assert stats["bytes_buffered"] == 0
    assert stats["connections_accepted"] == 7
    assert stats["frames_in"] == stats["frames_out"] == 37
    assert stats["errors"]["protocol"] == 0
    assert set(stats["errors"]) == {
        "busy", "protocol", "read_timeout", "write_timeout", "handler", "login", "io", "tls",
        "proxy",
    }
    assert stats["tls_handshakes"] == stats["errors"]["tls"] == 0  # a plaintext port
    assert stats["proxy_headers"] == stats["errors"]["proxy"] == 0  # no PROXY protocol
    # Still readable after the server stopped.
    assert server.stats()["frames_in"] == 37


def test_raise_nofile_limit_false_serves() -> None:
    server = gopro.Server("127.0.0.1:0", raise_nofile_limit=False)
    with server, gopro.Client(server.local_addr, timeout=5) as client:
        assert client.request(gopro.Command.MESSAGE, b"hi").body == b"Server says: hi"
    with pytest.raises(TypeError):
        gopro.Server("127.0.0.1:0", raise_nofile_limit="no")  # type: ignore[arg-type]


def named_server(listen: str, name: bytes, reuse_port: bool) -> gopro.Server:
    """A server that answers command 16 with its name."""
    server = gopro.Server(listen, reuse_port=reuse_port)
    server.handler(16, lambda frame: name)
    return server


def answered_by(addr: str) -> bytes:
    """The name of the server a new connection to `addr` reaches."""
    with gopro.Client(addr, timeout=5) as client:
        return client.request(16, b"").body


def test_reuse_port_lets_two_servers_share_a_port() -> None:
    first = named_server("127.0.0.1:0", b"a", reuse_port=True)
    with first:
        addr = first.local_addr
        second = named_server(addr, b"b", reuse_port=True)
        with second:
            # Without it on both, the port is taken.
            with pytest.raises(gopro.BindError):
                named_server(addr, b"c", reuse_port=False).start()
            # Linux picks a listener by a hash of each connection's
            # address: 64 connections all reaching one has a chance of 2^-63.
            seen: set[bytes] = set()
            for _ in range(64):
                seen.add(answered_by(addr))
                if seen == {b"a", b"b"}:
                    break
            assert seen == {b"a", b"b"}
            first.shutdown()
            assert first.wait(5)
            assert {answered_by(addr) for _ in range(8)} == {b"b"}


def test_without_reuse_port_a_second_server_cannot_bind() -> None:
    with named_server("127.0.0.1:0", b"a", reuse_port=False) as first:
        for reuse_port in (False, True):
            with pytest.raises(gopro.BindError):
                named_server(first.local_addr, b"b", reuse_port=reuse_port).start()
    with pytest.raises(TypeError):
        gopro.Server("127.0.0.1:0", reuse_port="yes")  # type: ignore[arg-type]


def test_blocking_calls_in_a_handler_are_refused() -> None:
    server = gopro.Server("127.0.0.1:0")
    seen: list[BaseException] = []

    @server.handler(16)
    def blocking(frame: gopro.Frame) -> bytes:
        for call in (lambda: gopro.Client(server.local_addr), lambda: server.wait(0.1)):
            try:
                call()
            except gopro.BlockingInRuntime as e:
                seen.append(e)
        return b"done"

    with server, gopro.Client(server.local_addr, timeout=5) as client:
        assert client.request(16, b"").body == b"done"
    assert len(seen) == 2
    assert all(isinstance(e, RuntimeError) for e in seen)
    assert "blocking call" in str(seen[0])
