"""gopro.Client and gopro.AsyncClient against `gopro serve` through
`gopro proxy` and each of its faults: every call gets its exact reply or a
typed exception the fault can cause, within its timeout plus a margin --
never a wrong reply, a hang or a crash."""

from __future__ import annotations

import asyncio
import subprocess
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterator, TypeVar

import gopro
import pytest
from conftest import GOPRO_BIN, Process, need

T = TypeVar("T")

MARGIN = 1.0  # seconds a call may take beyond its timeout
KIB = 1024
SIZES = [0, 1, 13, 1000, 16 * KIB, 64 * KIB, 300 * KIB]


@dataclass(frozen=True)
class Case:
    fault: str
    direction: str = "both"
    timeout: float = 1.0
    max_size: int = 1 << 30
    rounds: int = 2
    # Error kinds a call may end with (see `kind`); none: every reply right.
    allowed: frozenset[str] = frozenset()
    # At least one error of one of these kinds must appear.
    expected: frozenset[str] = frozenset()

    @property
    def id(self) -> str:
        return f"{self.fault},{self.direction}"


# A connection that ends fails the requests written with "lost" (they may
# have been handled) and the ones not yet written with "closed".
CLOSED = frozenset({"closed", "lost"})
CASES = [
    Case("none"),
    # A write and a TCP segment per byte: bodies up to 64 KiB keep it fast.
    Case("chunk1", timeout=3.0, max_size=64 * KIB, rounds=1),
    Case("delay=10ms"),
    Case("throttle=4000000"),
    # Inside the first 300 KiB request.
    Case("reset-after=100000", "up", allowed=CLOSED, expected=CLOSED),
    # Past the first reply (21 bytes), inside the second.
    Case("reset-after=25", "down", allowed=CLOSED, expected=CLOSED),
    Case(
        "stop-after=100000",
        timeout=0.5,
        allowed=frozenset({"timeout", "closed", "lost"}),
        expected=frozenset({"timeout", "lost"}),
    ),
    Case(
        "stop-after=25",
        "down",
        timeout=0.5,
        allowed=frozenset({"timeout", "closed", "lost"}),
        expected=frozenset({"timeout", "lost"}),
    ),
    Case("half-close", "down", allowed=CLOSED, expected=CLOSED),
    Case(
        "half-close=25",
        "down",
        allowed=frozenset({"closed", "lost", "truncated"}),
        expected=frozenset({"truncated"}),
    ),
    Case("half-close", "up", allowed=CLOSED, expected=CLOSED),
]


def kind(e: BaseException) -> str | None:
    """The kind of a typed client error; None for anything else."""
    if isinstance(e, gopro.Timeout):
        assert isinstance(e, TimeoutError)
        return "timeout"
    if isinstance(e, gopro.ConnectionLost):
        assert "may have been handled" in str(e)
        return "lost"
    if isinstance(e, gopro.ConnectionClosed):
        assert isinstance(e, ConnectionError)
        return "closed"
    if isinstance(e, gopro.ProtocolError):
        # The stream ended inside a reply (SPEC §2).
        assert e.kind == "unexpected_eof"
        return "truncated"
    return None


def request(i: int, size: int) -> tuple[int, bytes, gopro.Frame]:
    """Request i (MESSAGE or HEARTBEAT, with a body that names it) and its reply."""
    command = gopro.Command.MESSAGE if i % 2 == 0 else gopro.Command.HEARTBEAT
    filler = bytes(ord("a") + (i + j) % 26 for j in range(26)) * (size // 26 + 1)
    body = (b"request %d;" % i + filler)[:size]
    if command == gopro.Command.MESSAGE:
        return command, body, gopro.Frame(command, b"Server says: " + body)
    return command, body, gopro.Frame(command, body)


def requests(case: Case) -> list[tuple[int, bytes, gopro.Frame]]:
    sizes = [s for s in SIZES if s <= case.max_size] * case.rounds
    return [request(i, size) for i, size in enumerate(sizes)]


@dataclass
class Tally:
    case: Case = field(repr=False)
    who: str
    requests: int = 0
    right: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def outcome(self, what: str, took: float, error: BaseException | None) -> bool:
        """Checks a call's time and error; True if it succeeded."""
        limit = self.case.timeout + MARGIN
        assert took <= limit, f"{self.who} {self.case.id}: {what} took {took:.2f} s > {limit} s"
        if error is None:
            return True
        k = kind(error)
        if k is None or k not in self.case.allowed:
            raise AssertionError(
                f"{self.who} {self.case.id}: {what} raised {error!r}"
            ) from error
        self.errors[k] = self.errors.get(k, 0) + 1
        return False

    def call(self, what: str, fn: Callable[[], T]) -> T | None:
        started = time.monotonic()
        try:
            value = fn()
        except Exception as e:
            self.outcome(what, time.monotonic() - started, e)
            return None
        self.outcome(what, time.monotonic() - started, None)
        return value

    async def acall(self, what: str, awaitable: Awaitable[T]) -> T | None:
        started = time.monotonic()
        try:
            value = await awaitable
        except Exception as e:
            self.outcome(what, time.monotonic() - started, e)
            return None
        self.outcome(what, time.monotonic() - started, None)
        return value

    def reply(self, what: str, got: gopro.Frame | None, want: gopro.Frame) -> None:
        self.requests += 1
        if got is not None:
            assert got == want, (
                f"{self.who} {self.case.id}: wrong reply to {what}: {got.command} with "
                f"{len(got.body)} bytes, wanted {want.command} with {len(want.body)}"
            )
            self.right += 1

    def check(self) -> None:
        if not self.case.allowed:
            assert self.right == self.requests, self
        else:
            assert self.case.expected & self.errors.keys(), (
                f"{self.who} {self.case.id}: none of {set(self.case.expected)} appeared: {self}"
            )


def sync_workload(case: Case, addr: str) -> Tally:
    tally = Tally(case, "Client")
    reqs = requests(case)
    with gopro.Client(addr, timeout=case.timeout, connect_timeout=5) as client:
        for i, (command, body, want) in enumerate(reqs):
            got = tally.call(f"request {i}", lambda: client.request(command, body))
            tally.reply(f"request {i}", got, want)
    with gopro.Client(addr, timeout=case.timeout, connect_timeout=5) as client:
        sent = 0
        for i, (command, body, _) in enumerate(reqs):
            ok = tally.call(f"send {i}", lambda: client.send(command, body) or True)
            if ok is None:
                break
            sent += 1
        tally.call("flush", client.flush)
        for i in range(sent):
            got = tally.call(f"pipelined reply {i}", client.recv)
            tally.reply(f"pipelined reply {i}", got, reqs[i][2])
    return tally


async def async_workload(case: Case, addr: str) -> Tally:
    tally = Tally(case, "AsyncClient")
    reqs = requests(case)
    async with await gopro.AsyncClient.connect(
        addr, timeout=case.timeout, connect_timeout=5
    ) as client:
        for i, (command, body, want) in enumerate(reqs):
            got = await tally.acall(f"request {i}", client.request(command, body))
            tally.reply(f"request {i}", got, want)
    async with await gopro.AsyncClient.connect(
        addr, timeout=case.timeout, connect_timeout=5
    ) as client:
        sent = 0
        for i, (command, body, _) in enumerate(reqs):
            ok = await tally.acall(f"send {i}", sent_ok(client.send(command, body)))
            if ok is None:
                break
            sent += 1
        await tally.acall("flush", client.flush())
        for i in range(sent):
            got = await tally.acall(f"pipelined reply {i}", client.recv())
            tally.reply(f"pipelined reply {i}", got, reqs[i][2])
    return tally


async def sent_ok(awaitable: Awaitable[None]) -> bool:
    await awaitable
    return True


class Proxy:
    """`gopro proxy` in front of `upstream`; reads its `listening on` line."""

    def __init__(self, upstream: str, case: Case) -> None:
        self.proc = subprocess.Popen(
            [
                str(need(GOPRO_BIN)),
                "proxy",
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                upstream,
                "--fault",
                case.fault,
                "--direction",
                case.direction,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def addr(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("listening on "), f"gopro proxy printed {line!r}"
        return line[len("listening on ") :].strip()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def proxies() -> Iterator[dict[Case, str]]:
    """One `gopro serve` and a proxy per fault in front of it."""
    server = Process([str(need(GOPRO_BIN)), "serve", "--listen", "127.0.0.1:0", "--grace", "2s"])
    started = {case: Proxy(server.addr, case) for case in CASES}
    try:
        yield {case: proxy.addr() for case, proxy in started.items()}
    finally:
        # The proxies first: their stalled connections then end at once.
        for proxy in started.values():
            proxy.stop()
        server.stop()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_clients_through_fault(case: Case, proxies: dict[Case, str]) -> None:
    addr = proxies[case]
    # The blocking client on a thread and the asyncio one, at the same time.
    sync_tally, async_tally = await asyncio.gather(
        asyncio.to_thread(sync_workload, case, addr), async_workload(case, addr)
    )
    print(f"{case.id}: {sync_tally}\n{case.id}: {async_tally}")
    sync_tally.check()
    async_tally.check()
    # The server came through it all.
    with gopro.Client(proxies[CASES[0]], timeout=5) as client:
        client.heartbeat()
