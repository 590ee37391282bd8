"""The shared clients against servers scripted here, where the timing of
each reply is the test's: a GOAWAY that leaves requests unhandled, a
per-call timeout while the server still answers, `max_in_flight` for the
threads sharing a `Client`, LOGIN on every connection of an `AsyncClient`,
and a server killed with requests on the wire."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import gopro
import pytest
from conftest import GOPRO_BIN, Process, need
from test_async_bounds import Frames, answers_when_quiet
from test_client import FakeServer

Script = Callable[[socket.socket], None]


def read_n(frames: Frames, n: int) -> list[gopro.Frame]:
    got = []
    for _ in range(n):
        frame = frames.next()
        assert frame is not None
        got.append(frame)
    return got


def answer(conn: socket.socket, frame: gopro.Frame) -> None:
    conn.sendall(gopro.encode(frame.command, b"re " + frame.body))


def goaway_after_one(conn: socket.socket) -> None:
    """Takes three requests, answers the first, goes away: the other two
    were not handled."""
    first, *_ = read_n(Frames(conn), 3)
    answer(conn, first)
    conn.sendall(gopro.encode(gopro.Command.GOAWAY, b"restarting"))


def answers_all(n: int) -> Script:
    def script(conn: socket.socket) -> None:
        for frame in read_n(Frames(conn), n):
            answer(conn, frame)
        try:
            conn.recv(1)  # until the client closes
        except OSError:
            pass

    return script


async def test_async_goaway_resends_exactly_what_was_not_handled() -> None:
    server = FakeServer(goaway_after_one, answers_all(2))
    client = await gopro.AsyncClient.connect(server.addr, timeout=10, reconnect=True)
    replies = await asyncio.gather(*(client.request(1, b"%d" % i) for i in range(3)))
    assert [r.body for r in replies] == [b"re 0", b"re 1", b"re 2"]
    assert (client.stats.resent, client.stats.reconnects, client.stats.lost) == (2, 1, 0)
    await client.close()
    server.close()


def test_goaway_resends_exactly_what_was_not_handled() -> None:
    server = FakeServer(goaway_after_one, answers_all(2))
    with gopro.Client(server.addr, timeout=10, reconnect=True) as client:
        with ThreadPoolExecutor(3) as pool:
            replies = list(pool.map(lambda i: client.request(1, b"%d" % i), range(3)))
        assert sorted(r.body for r in replies) == [b"re 0", b"re 1", b"re 2"]
        assert (client.stats.resent, client.stats.reconnects, client.stats.lost) == (2, 1, 0)
    server.close()


def lost_without_goaway(conn: socket.socket) -> None:
    """Takes a repeatable request and another, answers neither, and closes:
    both may have been handled."""
    read_n(Frames(conn), 2)


def repeatable_case(client_stats: Callable[[], gopro.ClientStats], outcomes: list[object]) -> None:
    repeated, other = outcomes
    assert isinstance(repeated, gopro.Frame) and repeated.body == b"re again", outcomes
    assert isinstance(other, gopro.ConnectionLost), outcomes
    stats = client_stats()
    assert (stats.resent, stats.lost, stats.reconnects) == (1, 1, 1), stats


def test_a_repeatable_command_is_sent_again_after_a_lost_connection() -> None:
    """After a connection lost without GOAWAY, a request whose command is in
    `repeatable` is sent again on the next connection; another command's
    request fails with `ConnectionLost`, not sent again."""
    server = FakeServer(lost_without_goaway, answers_all(1))
    with gopro.Client(server.addr, timeout=10, reconnect=True, repeatable=[16]) as client:
        with ThreadPoolExecutor(2) as pool:
            calls = [pool.submit(client.request, 16, b"again"), pool.submit(client.request, 17, b"once")]
            outcomes = [c.exception(15) or c.result() for c in calls]
        repeatable_case(lambda: client.stats, outcomes)
    server.close()


async def test_async_a_repeatable_command_is_sent_again_after_a_lost_connection() -> None:
    server = FakeServer(lost_without_goaway, answers_all(1))
    client = await gopro.AsyncClient.connect(server.addr, timeout=10, reconnect=True, repeatable=[16])
    outcomes = await asyncio.gather(
        client.request(16, b"again"), client.request(17, b"once"), return_exceptions=True
    )
    repeatable_case(lambda: client.stats, list(outcomes))
    await client.close()
    server.close()


def test_a_call_that_times_out_leaves_the_connection_to_a_server_still_answering() -> None:
    """A's reply comes at 0.8 × the timeout, B's at 1.4 ×: B's caller gets
    `Timeout` at 1 ×, yet the server keeps answering within the response
    timeout (1.1 × since A's reply), so the connection stays, B's late reply
    is discarded, and the next call gets its own."""
    timeout = 2.0

    def script(conn: socket.socket) -> None:
        frames = Frames(conn)
        a, b = read_n(frames, 2)
        time.sleep(0.8 * timeout)
        answer(conn, a)
        time.sleep(0.6 * timeout)
        answer(conn, b)
        answer(conn, read_n(frames, 1)[0])

    server = FakeServer(script)
    with gopro.Client(server.addr, timeout=timeout) as client:
        with ThreadPoolExecutor(2) as pool:
            a = pool.submit(client.request, 1, b"a")
            time.sleep(0.05)
            b = pool.submit(client.request, 1, b"b")
            assert a.result().body == b"re a"
            with pytest.raises(gopro.Timeout, match="reply"):
                b.result()
        assert client.request(1, b"c").body == b"re c"
        assert client.stats.reconnects == 0
    server.close()


def test_threads_past_max_in_flight_wait_unwritten() -> None:
    """Ten threads on a `Client` with `max_in_flight=4`: the server never
    has more than 4 requests unanswered, and each thread gets its reply."""
    seen = {"most_unanswered": 0, "quiet_at_4": 0}
    server = FakeServer(answers_when_quiet(10, 4, seen))
    with gopro.Client(server.addr, timeout=10, max_in_flight=4) as client:
        with ThreadPoolExecutor(10) as pool:
            replies = list(pool.map(lambda i: client.request(1, b"%d" % i), range(10)))
    server.close()
    assert [r.body for r in replies] == [b"re %d" % i for i in range(10)]
    assert seen["most_unanswered"] == 4


def test_async_login_is_replayed_on_every_connection() -> None:
    """An `AsyncClient` sends LOGIN first on each connection it opens."""

    def login_then_answer(conn: socket.socket) -> None:
        frames = Frames(conn)
        login = read_n(frames, 1)[0]
        assert (login.command, login.body) == (gopro.Command.LOGIN, b"user:pw")
        conn.sendall(gopro.encode(gopro.Command.LOGIN, b"OK"))
        request = read_n(frames, 1)[0]
        answer(conn, request)
        if request.body == b"before":
            conn.sendall(gopro.encode(gopro.Command.GOAWAY, b""))
        else:
            try:
                conn.recv(1)
            except OSError:
                pass

    server = FakeServer(login_then_answer, login_then_answer)

    async def main() -> None:
        client = await gopro.AsyncClient.connect(server.addr, timeout=10, reconnect=True, login="user:pw")
        assert (await client.request(1, b"before")).body == b"re before"
        # The server went away after that reply; the next request goes on a
        # new connection, after a LOGIN of its own.
        assert (await client.request(1, b"after")).body == b"re after"
        assert client.stats.reconnects == 1
        await client.close()

    asyncio.run(main())
    server.close()


def stopped_server() -> tuple[Process, str]:
    """A `gopro serve`, and its address; the tests stop it (SIGSTOP) once
    the client is connected, so that requests reach its socket unread."""
    gopro_bin = str(need(GOPRO_BIN))
    server = Process([gopro_bin, "serve", "--listen", "127.0.0.1:0"])
    return server, server.addr


def stop(server: Process) -> None:
    """SIGSTOP, returning once the process is stopped (the signal takes
    effect when the process is next scheduled)."""
    server.proc.send_signal(signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while True:
        with open(f"/proc/{server.proc.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "T":
                return
        assert time.monotonic() < deadline, "the server did not stop"
        time.sleep(0.01)


def kill(server: Process) -> None:
    server.proc.send_signal(signal.SIGKILL)
    server.stop()


def test_sigkill_fails_each_request_on_the_wire_with_connection_lost() -> None:
    """Eight threads' requests are on the wire when the server is killed:
    each fails with `ConnectionLost` (it may have been handled), none is
    sent again, and the client works once a server is back."""
    n = 8
    server, addr = stopped_server()
    client = gopro.Client(addr, timeout=10, reconnect=True)
    try:
        client.heartbeat()
        stop(server)
        with ThreadPoolExecutor(n) as pool:
            calls = [pool.submit(client.request, 1, b"%d" % i) for i in range(n)]
            time.sleep(0.5)  # written, and waiting for replies
            assert not any(c.done() for c in calls)
            kill(server)
            outcomes = [c.exception(10) for c in calls]
        assert all(isinstance(o, gopro.ConnectionLost) for o in outcomes), outcomes
        assert (client.stats.lost, client.stats.resent) == (n, 0)
        again = Process([str(need(GOPRO_BIN)), "serve", "--listen", addr])
        try:
            assert client.request(1, b"back").body == b"Server says: back"
        finally:
            again.stop()
    finally:
        client.close()


def test_async_sigkill_fails_each_request_on_the_wire_with_connection_lost() -> None:
    n = 8
    server, addr = stopped_server()

    async def main() -> None:
        client = await gopro.AsyncClient.connect(addr, timeout=10, reconnect=True)
        await client.heartbeat()
        stop(server)
        calls = [asyncio.ensure_future(client.request(1, b"%d" % i)) for i in range(n)]
        await asyncio.sleep(0.5)
        assert not any(c.done() for c in calls)
        kill(server)
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(o, gopro.ConnectionLost) for o in outcomes), outcomes
        assert (client.stats.lost, client.stats.resent) == (n, 0)
        again = Process([str(need(GOPRO_BIN)), "serve", "--listen", addr])
        try:
            assert (await client.request(1, b"back")).body == b"Server says: back"
        finally:
            again.stop()
            await client.close()

    try:
        asyncio.run(main())
    finally:
        if server.proc.poll() is None:
            kill(server)


def test_an_idle_client_sends_heartbeats() -> None:
    """`Client(keep_alive=…)` sends HEARTBEATs while idle, from no thread of
    the caller's."""
    commands: list[int] = []

    def script(conn: socket.socket) -> None:
        frames = Frames(conn)
        while True:
            frame = read_n(frames, 1)[0]
            commands.append(frame.command)
            conn.sendall(gopro.encode(frame.command, frame.body))
            if frame.command == gopro.Command.MESSAGE:
                return

    server = FakeServer(script)
    with gopro.Client(server.addr, timeout=5, keep_alive=0.1) as client:
        time.sleep(0.55)
        assert client.request(1, b"after").body == b"after"
    server.close()
    assert commands[-1] == gopro.Command.MESSAGE
    assert commands.count(gopro.Command.HEARTBEAT) >= 3, commands
