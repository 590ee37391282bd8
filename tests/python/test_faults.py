"""gopro.Client and gopro.AsyncClient against `gopro serve` through
`gopro proxy` and each of its faults: every call gets its exact reply or a
typed exception the fault can cause, within its timeout plus a margin --
never a wrong reply, a hang or a crash. Each client is first used by one
caller at a time, then shared: one AsyncClient by TASKS asyncio tasks and
one Client by THREADS threads, all calling at once with bodies of their
own (as gopro-rs/tests/faults.rs does for the Rust clients)."""

from __future__ import annotations

import asyncio
import faulthandler
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterable, Iterator, TypeVar

import gopro
import pytest
from conftest import GOPRO_BIN, Process, need

T = TypeVar("T")

MARGIN = 1.0  # seconds a call may take beyond its timeout
KIB = 1024
SIZES = [0, 1, 13, 1000, 16 * KIB, 64 * KIB, 300 * KIB]
TASKS = 8  # asyncio tasks sharing one AsyncClient
THREADS = 4  # threads sharing one Client
# Of the callers sharing a client, only every fourth sends bodies above this
# size, so that what is in flight at once still passes a throttled or
# byte-by-byte connection well within the timeout.
SHARED_SMALL = 16 * KIB
# The smallest body of a shared client's request: room for the number that
# tells its reply from every other caller's.
SHARED_MIN = 16


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
    # The end of the stream comes after the first byte the client wrote:
    # the request it belongs to, at least, was written and is "lost".
    Case("half-close=1", "up", allowed=CLOSED, expected=frozenset({"lost"})),
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


def sizes(case: Case) -> list[int]:
    return [s for s in SIZES if s <= case.max_size] * case.rounds


def requests(case: Case) -> list[tuple[int, bytes, gopro.Frame]]:
    return [request(i, size) for i, size in enumerate(sizes(case))]


def shared_requests(case: Case, caller: int) -> list[tuple[int, int]]:
    """The requests (numbers and body sizes) of caller `caller` of a shared
    client: numbered apart from every other caller's, with bodies that name
    them, and started at different sizes so that the callers are out of step."""
    mine = [max(s, SHARED_MIN) for s in sizes(case) if caller % 4 == 0 or s <= SHARED_SMALL]
    start = caller % len(mine)
    return [(caller * 1000 + c, size) for c, size in enumerate(mine[start:] + mine[:start])]


@dataclass
class Tally:
    case: Case = field(repr=False)
    who: str
    requests: int = 0
    right: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    slowest: float = 0.0  # seconds the longest call took
    # The call under way on a thread (what, when it started), for `watch`.
    pending: tuple[str, float] | None = field(default=None, repr=False)

    @property
    def limit(self) -> float:
        return self.case.timeout + MARGIN

    def add(self, other: Tally) -> None:
        self.requests += other.requests
        self.right += other.right
        self.slowest = max(self.slowest, other.slowest)
        for k, n in other.errors.items():
            self.errors[k] = self.errors.get(k, 0) + n

    def hung(self, what: str, after: float) -> AssertionError:
        """The failure of a call that has not returned, with every thread's stack."""
        faulthandler.dump_traceback()
        return AssertionError(f"{self.who} {self.case.id}: {what} did not return in {after} s")

    def outcome(self, what: str, took: float, error: BaseException | None) -> bool:
        """Checks a call's time and error; True if it succeeded."""
        self.slowest = max(self.slowest, took)
        limit = self.limit
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
        self.pending = (what, started)
        try:
            value = fn()
        except Exception as e:
            self.pending = None
            self.outcome(what, time.monotonic() - started, e)
            return None
        self.pending = None
        self.outcome(what, time.monotonic() - started, None)
        return value

    async def acall(self, what: str, awaitable: Awaitable[T]) -> T | None:
        started = time.monotonic()
        # A call that never returns fails the test rather than hanging it.
        call = asyncio.ensure_future(awaitable)
        done, _ = await asyncio.wait({call}, timeout=self.limit)
        if not done:
            call.cancel()
            raise self.hung(what, self.limit)
        error = call.exception()
        self.outcome(what, time.monotonic() - started, error)
        return call.result() if error is None else None

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


def connect(case: Case, addr: str) -> gopro.Client:
    # Connecting to the proxy always works: it accepts before it dials.
    return gopro.Client(addr, timeout=case.timeout, connect_timeout=5)


async def aconnect(case: Case, addr: str) -> gopro.AsyncClient:
    return await gopro.AsyncClient.connect(addr, timeout=case.timeout, connect_timeout=5)


def in_turn(tally: Tally, client: gopro.Client, numbered: Iterable[tuple[int, int]]) -> Tally:
    """Makes requests (numbers and body sizes) one after another, each
    waiting for its reply."""
    for i, size in numbered:
        command, body, want = request(i, size)
        what = f"request {i} ({size} bytes)"
        tally.reply(what, tally.call(what, lambda: client.request(command, body)), want)
    return tally


async def ain_turn(
    tally: Tally, client: gopro.AsyncClient, numbered: Iterable[tuple[int, int]]
) -> Tally:
    """`in_turn` for an AsyncClient."""
    for i, size in numbered:
        command, body, want = request(i, size)
        what = f"request {i} ({size} bytes)"
        tally.reply(what, await tally.acall(what, client.request(command, body)), want)
    return tally


def sync_workload(case: Case, addr: str) -> Tally:
    """One connection of sequential requests, then one of pipelined ones."""
    tally = Tally(case, "Client")
    reqs = requests(case)
    with connect(case, addr) as client:
        in_turn(tally, client, enumerate(sizes(case)))
    with connect(case, addr) as client:
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
    async with await aconnect(case, addr) as client:
        await ain_turn(tally, client, enumerate(sizes(case)))
    async with await aconnect(case, addr) as client:
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


def total(who: str, tallies: list[Tally]) -> Tally:
    """What the callers of one shared client saw, together."""
    together = Tally(tallies[0].case, who)
    for tally in tallies:
        together.add(tally)
    return together


def watch(threads: list[threading.Thread], tallies: list[Tally]) -> None:
    """Waits for the threads. A call slower than its limit fails once it
    returns; one that has not returned a margin later fails the test rather
    than hanging it."""
    while any(t.is_alive() for t in threads):
        for tally in tallies:
            pending = tally.pending
            if pending is not None and time.monotonic() - pending[1] > tally.limit + MARGIN:
                raise tally.hung(pending[0], tally.limit + MARGIN)
        time.sleep(0.02)


def sync_shared(case: Case, addr: str) -> Tally:
    """One Client shared by THREADS threads, all making requests at once."""
    tallies = [Tally(case, f"shared Client, thread {t}") for t in range(THREADS)]
    failed: list[BaseException] = []
    with connect(case, addr) as client:

        def work(caller: int) -> None:
            try:
                in_turn(tallies[caller], client, shared_requests(case, caller))
            except BaseException as e:  # noqa: BLE001 - raised below
                failed.append(e)

        threads = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(THREADS)]
        for thread in threads:
            thread.start()
        watch(threads, tallies)
    if failed:
        raise failed[0]
    return total("shared Client", tallies)


async def async_shared(case: Case, addr: str) -> Tally:
    """One AsyncClient shared by TASKS tasks, all making requests at once."""
    tallies = [Tally(case, f"shared AsyncClient, task {t}") for t in range(TASKS)]
    async with await aconnect(case, addr) as client:
        ended = await asyncio.gather(
            *(ain_turn(tallies[t], client, shared_requests(case, t)) for t in range(TASKS)),
            return_exceptions=True,
        )
    for end in ended:
        if isinstance(end, BaseException):
            raise end
    return total("shared AsyncClient", tallies)


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


async def at_once(
    on_thread: Callable[[Case, str], Tally],
    here: Callable[[Case, str], Awaitable[Tally]],
    case: Case,
    proxies: dict[Case, str],
) -> None:
    """Runs the blocking workload on a thread and the asyncio one here, at
    the same time, through the case's proxy; checks what both saw."""
    addr = proxies[case]
    tallies = await asyncio.gather(asyncio.to_thread(on_thread, case, addr), here(case, addr))
    for tally in tallies:
        print(f"{case.id}: {tally}")
    for tally in tallies:
        tally.check()
    # The server came through it all.
    with gopro.Client(proxies[CASES[0]], timeout=5) as client:
        client.heartbeat()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_clients_through_fault(case: Case, proxies: dict[Case, str]) -> None:
    # Each client used by one caller at a time.
    await at_once(sync_workload, async_workload, case, proxies)


# A hang that the per-call guards cannot end (a client's close, say) ends
# the run with every thread's stack.
@pytest.mark.timeout(30, method="thread")
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_shared_clients_through_fault(case: Case, proxies: dict[Case, str]) -> None:
    # One Client shared by THREADS threads, one AsyncClient by TASKS tasks.
    await at_once(sync_shared, async_shared, case, proxies)
