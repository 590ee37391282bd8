"""The blocking and asyncio clients against `gopro serve`, and against
scripted fake servers for the errors a real server rarely gives."""

from __future__ import annotations

import asyncio
import collections
import gc
import os
import socket
import threading
import time
import weakref
from typing import Callable, Iterator

import gopro
import pytest
from conftest import Process


class FakeServer:
    """Accepts a connection per script; the n-th script plays the server's
    part on the n-th connection (a reconnecting client comes back to the
    same address). An exception in a script fails the test (pytest's
    warnings about threads are errors here)."""

    def __init__(self, *scripts: Callable[[socket.socket], None]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._run, args=(scripts,), daemon=True)
        self.thread.start()

    def _run(self, scripts: tuple[Callable[[socket.socket], None], ...]) -> None:
        for script in scripts:
            conn, _ = self.sock.accept()
            with conn:
                script(conn)

    def close(self) -> None:
        self.thread.join(10)
        self.sock.close()


def read_frame(conn: socket.socket) -> gopro.Frame:
    decoder = gopro.Decoder()
    while True:
        for frame in decoder:
            return frame
        data = conn.recv(65536)
        if not data:
            raise EOFError
        decoder.feed(data)


@pytest.fixture
def fake() -> Iterator[Callable[[Callable[[socket.socket], None]], FakeServer]]:
    servers: list[FakeServer] = []

    def make(script: Callable[[socket.socket], None]) -> FakeServer:
        servers.append(FakeServer(script))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def test_sync_client(rust_server: Process) -> None:
    with gopro.Client(rust_server.addr, timeout=5) as client:
        reply = client.request(gopro.Command.MESSAGE, b"Hello TCP World!")
        assert reply == gopro.Frame(gopro.Command.MESSAGE, b"Server says: Hello TCP World!")
        assert client.request(1, bytearray(b"ba")).body == b"Server says: ba"
        assert client.request(1, memoryview(b"mv")).body == b"Server says: mv"
        assert client.heartbeat() is None
        assert client.login(b"user:secret") is None
        assert client.login("user:secret") is None
        assert client.request(gopro.Command.HEARTBEAT, b"ping") == gopro.Frame(0, b"ping")
        for i in range(500):
            client.send(gopro.Command.MESSAGE, b"msg-%d" % i)
        client.flush()
        replies = [client.recv() for _ in range(500)]
        assert [r.body for r in replies] == [b"Server says: msg-%d" % i for i in range(500)]
        assert client.addr == rust_server.addr
        assert "gopro.Client" in repr(client)
    assert client.closed
    with pytest.raises(gopro.ConnectionClosed):
        client.request(1, b"after close")


def test_sync_client_errors(rust_server: Process) -> None:
    with gopro.Client(rust_server.addr, timeout=5) as client:
        with pytest.raises(gopro.ServerError) as info:
            client.request(42, b"")
        assert info.value.reason == "unknown command: 42"
        # An ERROR reply is the server's answer, not invalid bytes.
        assert not isinstance(info.value, gopro.ProtocolError)
        # ERROR replaces a reply; the connection stays usable.
        assert client.request(1, b"still here").body == b"Server says: still here"
        with pytest.raises(gopro.BodyTooLarge):
            client.request(1, bytes(gopro.DEFAULT_MAX_BODY + 1))
        with pytest.raises(ValueError):
            client.request(300, b"")
        with pytest.raises(gopro.NothingInFlight) as nothing:
            client.recv()  # nothing in flight
        assert (nothing.value.wanted, nothing.value.in_flight) == (1, 0)


def test_big_bodies(rust_server: Process) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    with gopro.Client(rust_server.addr, timeout=10) as client:
        assert client.request(1, body).body == b"Server says: " + body
        limit = gopro.DEFAULT_MAX_BODY - len(b"Server says: ")
        assert len(client.request(1, bytes(limit)).body) == gopro.DEFAULT_MAX_BODY
        with pytest.raises(gopro.ServerError):
            client.request(1, bytes(limit + 1))


def test_connect_refused() -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(gopro.ConnectError):
        gopro.Client(f"127.0.0.1:{port}", timeout=2)


def test_bad_arguments() -> None:
    # Refused by the core's rules before connecting (nothing listens there).
    for settings, name in (
        ({"timeout": 0}, "timeout"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"keep_alive": 0}, "keep_alive"),
    ):
        with pytest.raises(gopro.ConfigError, match=name) as info:
            gopro.Client("127.0.0.1:1", **settings)  # type: ignore[arg-type]
        assert info.value.setting == name
    with pytest.raises(ValueError):
        gopro.Client("127.0.0.1:1", timeout=-1)


def test_timeout(fake: Callable[..., FakeServer]) -> None:
    done = threading.Event()
    server = fake(lambda conn: done.wait(10))
    client = gopro.Client(server.addr, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(gopro.Timeout):
        client.request(1, b"no answer")
    assert isinstance(gopro.Timeout(), TimeoutError)
    assert time.monotonic() - started < 5
    # A late reply would belong to the request that timed out: closed.
    with pytest.raises(gopro.ConnectionClosed):
        client.request(1, b"again")
    done.set()
    client.close()


def test_connection_closed(fake: Callable[..., FakeServer]) -> None:
    def script(conn: socket.socket) -> None:
        read_frame(conn)

    server = fake(script)
    with gopro.Client(server.addr, timeout=5) as client:
        # The request was read, then the connection closed: it may have
        # been handled.
        with pytest.raises(gopro.ConnectionLost) as info:
            client.request(1, b"x")
        assert isinstance(info.value, gopro.ConnectionClosed)
        assert isinstance(info.value, ConnectionError)
        assert "may have been handled" in str(info.value)


def test_goaway(fake: Callable[..., FakeServer]) -> None:
    def script(conn: socket.socket) -> None:
        read_frame(conn)
        conn.sendall(gopro.encode(1, b"first") + gopro.encode(gopro.Command.GOAWAY, b"shutting down"))
        time.sleep(0.5)

    server = fake(script)
    with gopro.Client(server.addr, timeout=5) as client:
        client.send(1, b"a")
        client.send(1, b"b")
        assert client.recv().body == b"first"
        with pytest.raises(gopro.GoAway) as info:
            client.recv()
        assert info.value.reason == "shutting down"
        assert info.value.unanswered == 1
        with pytest.raises(gopro.GoAway):
            client.request(1, b"c")


def test_bad_magic_from_server(fake: Callable[..., FakeServer]) -> None:
    def script(conn: socket.socket) -> None:
        read_frame(conn)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        time.sleep(0.3)

    server = fake(script)
    with gopro.Client(server.addr, timeout=5) as client:
        with pytest.raises(gopro.ProtocolError) as info:
            client.request(1, b"x")
        assert info.value.kind == "bad_magic"


def test_reply_too_large(fake: Callable[..., FakeServer]) -> None:
    def script(conn: socket.socket) -> None:
        read_frame(conn)
        conn.sendall(bytes.fromhex("474f010100000005") + b"12345")
        time.sleep(0.3)

    server = fake(script)
    with gopro.Client(server.addr, timeout=5, max_body=4) as client:
        with pytest.raises(gopro.ProtocolError) as info:
            client.request(1, b"x")
        assert info.value.kind == "body_too_large"


def late_reply(delay: float) -> Callable[[socket.socket], None]:
    """A fake server's script: reads one request, answers it `delay` seconds later."""

    def script(conn: socket.socket) -> None:
        read_frame(conn)
        time.sleep(delay)
        conn.sendall(gopro.encode(1, b"late"))

    return script


def test_gil_released_while_waiting(fake: Callable[..., FakeServer]) -> None:
    server = fake(late_reply(0.5))
    ticks = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    counter = threading.Thread(target=count)
    counter.start()
    with gopro.Client(server.addr, timeout=5) as client:
        assert client.request(1, b"x").body == b"late"
    stop.set()
    counter.join()
    assert ticks > 50


def test_threads_share_a_client(rust_server: Process) -> None:
    errors: list[BaseException] = []
    with gopro.Client(rust_server.addr, timeout=10) as client:

        def work(n: int) -> None:
            try:
                for i in range(200):
                    body = b"t%d-%d" % (n, i)
                    assert client.request(1, body).body == b"Server says: " + body
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


async def test_async_client(rust_server: Process) -> None:
    async with await gopro.AsyncClient.connect(rust_server.addr, timeout=5) as client:
        reply = await client.request(gopro.Command.MESSAGE, b"Hello TCP World!")
        assert reply.body == b"Server says: Hello TCP World!"
        assert await client.heartbeat() is None
        assert await client.login(b"user:secret") is None
        for i in range(500):
            await client.send(1, b"m%d" % i)
        await client.flush()
        replies = [await client.recv() for _ in range(500)]
        assert replies[-1].body == b"Server says: m499"
        with pytest.raises(gopro.ServerError) as info:
            await client.request(42, b"")
        assert info.value.reason == "unknown command: 42"
        results = await asyncio.gather(*(client.request(1, b"g%d" % i) for i in range(50)))
        assert [r.body for r in results] == [b"Server says: g%d" % i for i in range(50)]
    assert client.closed
    with pytest.raises(gopro.ConnectionClosed):
        await client.request(1, b"x")


async def test_async_cancellation_keeps_order(fake: Callable[..., FakeServer]) -> None:
    def script(conn: socket.socket) -> None:
        first = read_frame(conn)
        time.sleep(0.3)
        conn.sendall(gopro.encode(1, b"reply to " + first.body))
        second = read_frame(conn)
        conn.sendall(gopro.encode(1, b"reply to " + second.body))
        time.sleep(0.3)

    server = fake(script)
    client = await gopro.AsyncClient.connect(server.addr, timeout=5)
    task = asyncio.ensure_future(client.request(1, b"one"))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The cancelled request's reply is not handed to the next one.
    assert (await client.request(1, b"two")).body == b"reply to two"
    await client.close()


async def test_async_wait_for_timeout(fake: Callable[..., FakeServer]) -> None:
    done = threading.Event()
    server = fake(lambda conn: done.wait(10))
    client = await gopro.AsyncClient.connect(server.addr, timeout=0.3)
    with pytest.raises(gopro.Timeout):
        await client.request(1, b"x")
    with pytest.raises(gopro.ConnectionClosed):
        await client.request(1, b"x")
    done.set()
    await client.close()


async def test_async_connect_refused() -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(gopro.ConnectError):
        await gopro.AsyncClient.connect(f"127.0.0.1:{port}")


async def test_async_loop_not_blocked(fake: Callable[..., FakeServer]) -> None:
    server = fake(late_reply(0.3))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    ticker = asyncio.ensure_future(tick())
    client = await gopro.AsyncClient.connect(server.addr)
    assert (await client.request(1, b"x")).body == b"late"
    ticker.cancel()
    await client.close()
    assert ticks > 20


def test_batch_replies_small_and_large(rust_server: Process) -> None:
    """Small replies of a batch share one `bytes`, large ones have their own
    (a reply kept then keeps little else alive); order and bodies hold."""
    sizes = [0, 5, 1011, 1012, 3000, 7, 20000, 1]  # 1011 + the prefix is the largest shared
    bodies = [bytes([65 + i]) * n for i, n in enumerate(sizes)]
    with gopro.Client(rust_server.addr, timeout=5) as client:
        replies = client.request_many([(1, b) for b in bodies])
    assert [r.body for r in replies] == [b"Server says: " + b for b in bodies]
    assert [r.command for r in replies] == [gopro.Command.MESSAGE] * len(sizes)
    shared = [r.body is not r.body for r in replies]  # sliced at each read
    assert shared == [len(b"Server says: ") + n <= 1024 for n in sizes]


async def test_async_results_already_received(rust_server: Process) -> None:
    """Calls answered from what was already received: a value, None, and an
    error, each as from a call that had to wait."""
    async with await gopro.AsyncClient.connect(rust_server.addr, timeout=5) as client:
        assert await client.send(42, b"") is None
        assert await client.send(1, b"after") is None
        await client.flush()
        await asyncio.sleep(0.1)  # both replies are in by then, read or not
        error = client.recv()  # raises when awaited, not here
        with pytest.raises(gopro.ServerError, match="unknown command: 42"):
            await error
        reply = await client.recv()
        assert reply == gopro.Frame(1, b"Server says: after")
        done = client.send(1, b"twice")
        assert await done is None
        assert await done is None  # a finished awaitable stays finished
        assert (await client.recv()).body == b"Server says: twice"
        assert await client.request_many([]) == []


async def test_async_errors_are_raised_when_awaited(fake: Callable[..., FakeServer]) -> None:
    def script(conn: socket.socket) -> None:
        read_frame(conn)
        conn.sendall(gopro.encode(gopro.Command.GOAWAY, b"shutting down"))
        time.sleep(0.5)

    server = fake(script)
    client = await gopro.AsyncClient.connect(server.addr, timeout=5)
    with pytest.raises(gopro.GoAway):
        await client.request(1, b"a")
    send, recv = client.send(1, b"b"), client.recv()  # nothing raised yet
    with pytest.raises(gopro.GoAway):
        await send
    with pytest.raises(gopro.GoAway):
        await recv
    with pytest.raises(ValueError):
        client.send(256, b"")  # bad arguments: at once
    await client.close()
    with pytest.raises(gopro.ConnectionClosed):
        client.send(1, b"c")  # a closed client: at once


def test_async_clients_on_loops_in_threads(rust_server: Process) -> None:
    """Each event loop gets its own results, whatever thread it runs on."""

    async def work(name: bytes) -> list[bytes]:
        async with await gopro.AsyncClient.connect(rust_server.addr, timeout=5) as client:
            got = [r.body for r in await asyncio.gather(*(client.request(1, name + b"%d" % i) for i in range(30)))]
            got += [r.body for r in await client.request_many([(1, name + b"m%d" % i) for i in range(300)])]
            return got

    results: dict[int, list[bytes]] = {}

    def run(n: int) -> None:
        results[n] = asyncio.run(work(b"t%d-" % n))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n in range(4):
        name = b"Server says: t%d-" % n
        assert results[n] == [name + b"%d" % i for i in range(30)] + [name + b"m%d" % i for i in range(300)]


def test_async_loops_leave_no_descriptors(rust_server: Process) -> None:
    """A loop's wake-up socket pair goes with the loop."""

    async def one() -> bytes:
        async with await gopro.AsyncClient.connect(rust_server.addr, timeout=5) as client:
            await client.send(1, b"x")
            await client.flush()
            return (await client.recv()).body

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    assert asyncio.run(one()) == b"Server says: x"
    gc.collect()
    before = open_fds()
    for _ in range(40):
        assert asyncio.run(one()) == b"Server says: x"
        gc.collect()
    # The last loops' pairs are closed when the next loop needs one.
    assert open_fds() - before <= 4


def test_async_loop_closed_with_a_call_in_flight_is_freed(fake: Callable[..., FakeServer]) -> None:
    release = threading.Event()

    def script(conn: socket.socket) -> None:
        first = read_frame(conn)
        release.wait(10)
        conn.sendall(gopro.encode(1, b"late " + first.body))
        read_frame(conn)
        conn.sendall(gopro.encode(1, b"next"))

    server = fake(script)
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def leave_a_call_behind() -> gopro.AsyncClient:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        client = await gopro.AsyncClient.connect(server.addr, timeout=5)
        asyncio.ensure_future(client.request(1, b"x"))
        await asyncio.sleep(0.05)
        return client  # the call is cancelled when the loop ends

    client = asyncio.run(leave_a_call_behind())
    release.set()

    async def next_call() -> bytes:
        return (await client.request(1, b"y")).body

    # The abandoned call ran to its end: its reply is not the next one's.
    assert asyncio.run(next_call()) == b"next"
    # The client holds its callers' futures (asyncio holds tasks weakly)
    # until it moves to another loop: the ended loop is free then.
    gc.collect()
    assert loops[0]() is None
    client.close()


def test_async_call_from_a_thread_without_a_loop(rust_server: Process) -> None:
    """A loop running on another thread is not this thread's loop."""
    async def connect() -> gopro.AsyncClient:
        return await gopro.AsyncClient.connect(rust_server.addr, timeout=5)

    loop = asyncio.new_event_loop()
    client = loop.run_until_complete(connect())  # on this thread
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        with pytest.raises(RuntimeError, match="no running event loop"):
            client.send(1, b"here")  # would be done at once

        async def in_its_loop() -> bytes:
            return (await client.request(1, b"there")).body

        assert asyncio.run_coroutine_threadsafe(in_its_loop(), loop).result(5) == b"Server says: there"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
        client.close()


async def test_async_done_awaitables_follow_the_generator_protocol(rust_server: Process) -> None:
    async with await gopro.AsyncClient.connect(rust_server.addr, timeout=5) as client:
        queued = client.send(1, b"x").__await__()  # done at once: queued
        with pytest.raises(StopIteration) as stop:
            queued.send(None)
        assert stop.value.value is None
        assert (await client.recv()).body == b"Server says: x"


def test_async_needs_a_loop() -> None:
    with pytest.raises(RuntimeError):
        gopro.AsyncClient.connect("127.0.0.1:1")


def test_async_calls_need_a_loop_even_when_done_at_once(rust_server: Process) -> None:
    async def connect() -> gopro.AsyncClient:
        client = await gopro.AsyncClient.connect(rust_server.addr, timeout=5)
        await client.send(1, b"in the loop")  # done at once: queued
        return client

    client = asyncio.run(connect())  # that loop has stopped
    with pytest.raises(RuntimeError, match="no running event loop"):
        client.send(1, b"outside")
    with pytest.raises(ValueError):
        client.send(256, b"")  # the arguments are checked first, as by every call
    with pytest.raises(RuntimeError, match="no running event loop"):
        client.flush()

    async def finish() -> bytes:
        await client.flush()
        return (await client.recv()).body

    assert asyncio.run(finish()) == b"Server says: in the loop"
    client.close()


def test_batches(rust_server: Process) -> None:
    with gopro.Client(rust_server.addr, timeout=5) as client:
        bodies = [b"b%d" % i for i in range(2000)]
        replies = client.request_many((1, b) for b in bodies)
        assert [r.body for r in replies] == [b"Server says: " + b for b in bodies]
        # Frames and pairs (tuples of any kind) mix; bodies of any bytes-like type.
        Pair = collections.namedtuple("Pair", "command body")
        client.send_many(
            [gopro.Frame(0, b"hb"), (gopro.Command.MESSAGE, bytearray(b"ba")), (1, memoryview(b"mv")), Pair(1, b"nt")]
        )
        assert client.recv_many(4) == [
            gopro.Frame(0, b"hb"),
            gopro.Frame(1, b"Server says: ba"),
            gopro.Frame(1, b"Server says: mv"),
            gopro.Frame(1, b"Server says: nt"),
        ]
        assert client.recv_many(0) == []
        # An ERROR reply raises, carrying the replies before it; the ones
        # after it are still there, in order.
        client.send_many([(1, b"a"), (42, b""), (1, b"c")])
        with pytest.raises(gopro.ServerError) as info:
            client.recv_many(3)
        assert info.value.reason == "unknown command: 42"
        assert info.value.replies == [gopro.Frame(1, b"Server says: a")]  # type: ignore[attr-defined]
        assert client.recv().body == b"Server says: c"
        # Bad batches are refused before anything is sent.
        with pytest.raises(TypeError, match="pairs"):
            client.send_many([b"not a request"])
        with pytest.raises(TypeError, match="pairs"):
            client.send_many([(1, b"x", 3)])
        with pytest.raises(ValueError):
            client.send_many([(300, b"")])
        with pytest.raises(gopro.BodyTooLarge):
            client.request_many([(1, b"ok"), (1, bytes(gopro.DEFAULT_MAX_BODY + 1))])
        with pytest.raises(gopro.NothingInFlight):
            client.recv()  # nothing was sent
        assert client.request(1, b"still fine").body == b"Server says: still fine"


async def test_async_batches(rust_server: Process) -> None:
    async with await gopro.AsyncClient.connect(rust_server.addr, timeout=5) as client:
        bodies = [b"a%d" % i for i in range(2000)]
        replies = await client.request_many([(1, b) for b in bodies])
        assert [r.body for r in replies] == [b"Server says: " + b for b in bodies]
        await client.send_many([(0, b""), gopro.Frame(1, b"f")])
        assert await client.recv_many(2) == [gopro.Frame(0, b""), gopro.Frame(1, b"Server says: f")]
        await client.send_many([(42, b"")])
        with pytest.raises(gopro.ServerError) as info:
            await client.recv_many(1)
        assert info.value.replies == []  # type: ignore[attr-defined]
