"""AsyncClient's bounds and idle keep-alive, against servers scripted here:
requests beyond `max_in_flight`, or beyond `max_queued_bytes` not yet
written, wait in the client (nothing more is written, nothing more is
buffered) and go once replies make room; an idle client sends HEARTBEATs."""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import time
import weakref
from typing import Callable

import gopro
import pytest
from conftest import Process
from test_client import FakeServer


class Frames:
    """Reads frames from a socket, keeping what a read brought beyond one."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.decoder = gopro.Decoder()

    def next(self) -> gopro.Frame | None:
        """The next frame; None if the socket's timeout passed first."""
        while True:
            for frame in self.decoder:
                return frame
            try:
                data = self.conn.recv(1 << 20)
            except socket.timeout:
                return None
            if not data:
                raise EOFError
            self.decoder.feed(data)


def answers_when_quiet(n: int, bound: int, seen: dict[str, int]) -> Callable[[socket.socket], None]:
    """A server script that answers what it has whenever the client has
    been quiet for 0.3 s (all it may write has been written), until `n`
    are answered; `seen` gets the most requests unanswered at once and how
    often the client went quiet at `bound` of them."""

    def script(conn: socket.socket) -> None:
        frames = Frames(conn)
        unanswered: list[gopro.Frame] = []
        answered = 0
        while answered < n:
            conn.settimeout(0.3 if unanswered else 5)
            frame = frames.next()
            if frame is not None:
                unanswered.append(frame)
                seen["most_unanswered"] = max(seen["most_unanswered"], len(unanswered))
                continue
            if len(unanswered) == bound:
                seen[f"quiet_at_{bound}"] += 1
            conn.sendall(b"".join(gopro.encode(1, b"re " + f.body) for f in unanswered))
            answered += len(unanswered)
            unanswered.clear()

    return script


async def test_requests_past_max_in_flight_wait_unwritten() -> None:
    seen: dict[str, int] = {"most_unanswered": 0, "quiet_at_4": 0}
    server = FakeServer(answers_when_quiet(10, 4, seen))
    async with await gopro.AsyncClient.connect(server.addr, timeout=10, max_in_flight=4) as client:
        replies = await asyncio.gather(*(client.request(1, b"%d" % i) for i in range(10)))
    server.close()
    assert [r.body for r in replies] == [b"re %d" % i for i in range(10)]
    assert seen["most_unanswered"] == 4
    assert seen["quiet_at_4"] >= 2


async def test_a_server_that_stops_reading_fills_the_byte_cap_and_no_more() -> None:
    release = threading.Event()
    body = bytes(256 * 1024)

    def script(conn: socket.socket) -> None:
        release.wait(10)
        frames = Frames(conn)
        for _ in range(64):
            frame = frames.next()
            assert frame is not None
            conn.sendall(gopro.encode(1, b"%d" % len(frame.body)))

    server = FakeServer(script)
    client = await gopro.AsyncClient.connect(
        server.addr, timeout=20, max_queued_bytes=1024 * 1024
    )
    calls = [asyncio.ensure_future(client.request(1, body)) for _ in range(64)]
    await asyncio.sleep(0.5)
    # 16 MiB asked for: what the kernel took plus at most the cap went into
    # the client's pipeline; the rest waits, its bytes not copied anywhere.
    queued = client.stats.requests
    assert 4 <= queued < 48, queued
    assert not any(c.done() for c in calls)
    release.set()
    replies = await asyncio.gather(*calls)
    await client.close()
    server.close()
    assert [r.body for r in replies] == [b"262144"] * 64
    assert client.stats.requests == 64


async def test_an_idle_client_sends_heartbeats() -> None:
    commands: list[int] = []

    def script(conn: socket.socket) -> None:
        frames = Frames(conn)
        conn.settimeout(5)
        while True:
            frame = frames.next()
            assert frame is not None
            commands.append(frame.command)
            conn.sendall(gopro.encode(frame.command, frame.body))
            if frame.command == gopro.Command.MESSAGE:
                return

    server = FakeServer(script)
    async with await gopro.AsyncClient.connect(server.addr, timeout=5, keep_alive=0.1) as client:
        await asyncio.sleep(0.55)
        assert (await client.request(1, b"after")).body == b"after"
    server.close()
    assert commands[-1] == gopro.Command.MESSAGE
    assert commands.count(gopro.Command.HEARTBEAT) >= 3, commands


async def test_cancelled_receives_and_waiting_sends_leave_no_trace() -> None:
    """A `recv` cancelled by `wait_for` takes no reply from the next one; a
    `send` cancelled while it waited for room is never sent."""
    release = threading.Event()
    got: list[bytes] = []

    def script(conn: socket.socket) -> None:
        frames = Frames(conn)
        conn.settimeout(5)
        first = frames.next()
        assert first is not None
        got.append(first.body)
        release.wait(5)
        conn.sendall(gopro.encode(1, b"re " + first.body))
        conn.settimeout(0.5)
        try:
            while (frame := frames.next()) is not None:
                got.append(frame.body)
                conn.sendall(gopro.encode(1, b"re " + frame.body))
        except EOFError:
            pass  # the client closed

    server = FakeServer(script)
    client = await gopro.AsyncClient.connect(server.addr, timeout=5, max_in_flight=1)
    await client.send(1, b"a")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(client.recv(), 0.1)
    waiting = asyncio.ensure_future(client.send(1, b"cancelled"))  # the client is full
    await asyncio.sleep(0.05)
    assert not waiting.done()
    waiting.cancel()
    release.set()
    assert (await client.recv()).body == b"re a"
    await client.send(1, b"b")
    assert (await client.recv()).body == b"re b"
    await client.close()
    server.close()
    assert got == [b"a", b"b"]


async def test_a_request_waiting_for_room_times_out_as_such() -> None:
    """With the client full and the server silent, the request in flight
    times out waiting for its reply, and the one behind it waiting for room
    in the client: it was never written."""
    done = threading.Event()
    got: list[bytes] = []

    def script(conn: socket.socket) -> None:
        frames = Frames(conn)
        conn.settimeout(2)
        try:
            while (frame := frames.next()) is not None:
                got.append(frame.body)
        except EOFError:
            pass
        done.wait(5)

    server = FakeServer(script)
    client = await gopro.AsyncClient.connect(server.addr, timeout=0.3, max_in_flight=1)
    first = asyncio.ensure_future(client.request(1, b"first"))
    second = asyncio.ensure_future(client.request(1, b"second"))
    results = await asyncio.gather(first, second, return_exceptions=True)
    assert all(isinstance(r, gopro.Timeout) for r in results), results
    assert "reply" in str(results[0]) and "room" in str(results[1]), results
    await client.close()
    done.set()
    server.close()
    assert got == [b"first"]


async def test_a_flush_the_server_does_not_read_times_out_and_the_connection_stays() -> None:
    """`flush` waits for its requests to be written within the timeout;
    it fails at the timeout with a server that takes nothing, and the
    connection stays while the server still answers."""
    release = threading.Event()
    n, body = 24, bytes(1024 * 1024)

    def script(conn: socket.socket) -> None:
        # Answers the two small requests (written first, whole) without
        # reading; reads nothing more until released.
        for small in (b"a", b"b"):
            time.sleep(0.3)
            conn.sendall(gopro.encode(1, b"re " + small))
        release.wait(10)
        frames = Frames(conn)
        conn.settimeout(5)
        for i in range(2 + n):
            frame = frames.next()
            assert frame is not None and len(frame.body) == (1 if i < 2 else len(body))
            if i >= 2:  # answered as read: the client's response clock restarts
                conn.sendall(gopro.encode(1, b"late"))
        assert frames.next() is not None  # the request after the flush
        conn.sendall(gopro.encode(1, b"after"))

    server = FakeServer(script)
    timeout = 1.0
    client = await gopro.AsyncClient.connect(server.addr, timeout=timeout, max_queued_bytes=64 << 20)
    await client.send(1, b"a")
    await client.send(1, b"b")
    for _ in range(n):
        await client.send(1, body)  # 24 MiB: far more than the socket takes
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(gopro.Timeout, match="write the requests"):
        await client.flush()
    assert loop.time() - started >= timeout * 0.95
    release.set()
    assert [(await client.recv()).body for _ in range(2)] == [b"re a", b"re b"]
    assert [r.body for r in await client.recv_many(n)] == [b"late"] * n
    assert (await client.request(1, b"x")).body == b"after"
    await client.close()
    server.close()


def test_a_loop_that_cannot_watch_sockets_is_refused(rust_server: Process) -> None:
    """asyncio's proactor loop (Windows) has no `add_reader`: connecting,
    or using a client made on another loop, says what is needed."""

    class NoReaders(asyncio.SelectorEventLoop):
        def add_reader(self, *args: object) -> None:
            raise NotImplementedError

    async def connect() -> gopro.AsyncClient:
        return await gopro.AsyncClient.connect(rust_server.addr, timeout=5)

    async def request(client: gopro.AsyncClient) -> bytes:
        return (await client.request(1, b"x")).body

    loop = NoReaders()
    try:
        with pytest.raises(RuntimeError, match=r"loop\.add_reader"):
            loop.run_until_complete(connect())
        client = asyncio.run(connect())
        with pytest.raises(RuntimeError, match=r"loop\.add_reader"):
            loop.run_until_complete(request(client))
    finally:
        loop.close()
    # Still whole on a loop that can.
    assert asyncio.run(request(client)) == b"Server says: x"
    client.close()


def test_a_closed_loop_whose_tasks_await_replies_is_collected() -> None:
    """A task awaiting a reply holds the client, which holds the task's
    future: when the loop is closed with the task still waiting, the
    garbage collector frees them all."""
    done = threading.Event()

    def script(conn: socket.socket) -> None:
        Frames(conn).next()
        done.wait(10)  # never answers

    server = FakeServer(script)
    loop = asyncio.new_event_loop()

    async def connect() -> gopro.AsyncClient:
        return await gopro.AsyncClient.connect(server.addr, timeout=30)

    client = loop.run_until_complete(connect())

    async def call(client: gopro.AsyncClient) -> None:
        await client.request(1, b"never answered")

    task = loop.create_task(call(client))
    loop.run_until_complete(asyncio.sleep(0.1))
    assert not task.done()
    loop.close()
    freed = weakref.ref(task), weakref.ref(loop)
    loop.set_exception_handler(lambda *_: None)  # "Task was destroyed but it is pending"
    del task, loop, client
    gc.collect()
    assert [ref() for ref in freed] == [None, None]
    done.set()
    server.close()
