"""Python benchmarks: gopro's Python API against pure-Python equivalents.

Run by scripts/bench-python.sh; prints a Markdown table of ratios.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import resource
import statistics
import struct
import subprocess
import sys
import threading
import time
from typing import Callable

import gopro
from bench.server import proc_cpu_seconds  # scripts/bench/server.py

GOPRO_BIN = os.environ.get("GOPRO_BIN", "target/release/gopro")
HEADER = struct.Struct(">HBBI")
MAGIC = 0x474F
MAX_BODY = 10 * 1024 * 1024


# ---------------------------------------------------------------- decoding


def struct_decode(data: bytes) -> list[tuple[int, int, bytes]]:
    """A careful pure-Python decoder: header checks, then the body."""
    frames = []
    append = frames.append
    unpack = HEADER.unpack_from
    pos, end = 0, len(data)
    while end - pos >= 8:
        magic, version, command, length = unpack(data, pos)
        if magic != MAGIC:
            raise ValueError("bad magic")
        if length > MAX_BODY:
            raise ValueError("body too large")
        if end - pos - 8 < length:
            break
        append((version, command, data[pos + 8 : pos + 8 + length]))
        pos += 8 + length
    return frames


def decode_ours(data: bytes, n: int, batch: bool) -> float:
    """Frames/s; the decoded frames are kept, as a caller would."""
    started = time.perf_counter()
    decoder = gopro.Decoder()
    decoder.feed(data)
    frames = decoder.frames() if batch else list(decoder)
    took = time.perf_counter() - started
    assert len(frames) == n and frames[-1].body == b"x" * 32
    return n / took


def decode_theirs(data: bytes, n: int) -> float:
    started = time.perf_counter()
    frames = struct_decode(data)
    took = time.perf_counter() - started
    assert len(frames) == n and frames[-1][2] == b"x" * 32
    return n / took


# ------------------------------------------------------- pipelined clients


def sync_client(addr: str, n: int, batch: int) -> float:
    body = b"x" * 32
    with gopro.Client(addr) as client:
        started = time.perf_counter()
        for _ in range(n // batch):
            for _ in range(batch):
                client.send(1, body)
            client.flush()
            for _ in range(batch):
                client.recv()
        return n / (time.perf_counter() - started)


async def async_client(addr: str, n: int, batch: int) -> float:
    body = b"x" * 32
    client = await gopro.AsyncClient.connect(addr)
    started = time.perf_counter()
    for _ in range(n // batch):
        for _ in range(batch):
            await client.send(1, body)
        await client.flush()
        for _ in range(batch):
            await client.recv()
    rate = n / (time.perf_counter() - started)
    await client.close()
    return rate


def sync_client_many(addr: str, n: int, batch: int) -> float:
    body = b"x" * 32
    requests = [(1, body)] * batch
    with gopro.Client(addr) as client:
        started = time.perf_counter()
        for _ in range(n // batch):
            replies = client.request_many(requests)
            assert len(replies) == batch
        return n / (time.perf_counter() - started)


async def async_client_many(addr: str, n: int, batch: int) -> float:
    body = b"x" * 32
    requests = [(1, body)] * batch
    client = await gopro.AsyncClient.connect(addr)
    started = time.perf_counter()
    for _ in range(n // batch):
        replies = await client.request_many(requests)
        assert len(replies) == batch
    rate = n / (time.perf_counter() - started)
    await client.close()
    return rate


async def asyncio_struct_client(addr: str, n: int, batch: int) -> float:
    """The same pipelining with asyncio streams and struct."""
    host, port = addr.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    body = b"x" * 32
    request = HEADER.pack(MAGIC, 1, 1, len(body)) + body
    started = time.perf_counter()
    for _ in range(n // batch):
        writer.write(request * batch)
        await writer.drain()
        for _ in range(batch):
            head = await reader.readexactly(8)
            magic, version, command, length = HEADER.unpack(head)
            if magic != MAGIC or length > MAX_BODY:
                raise ValueError("bad frame")
            await reader.readexactly(length)
    rate = n / (time.perf_counter() - started)
    writer.close()
    await writer.wait_closed()
    return rate


class AsyncioShared(asyncio.Protocol):
    """A pure-asyncio client that many tasks share: `request()` writes a
    frame and returns a future; replies resolve the futures in order."""

    def __init__(self) -> None:
        self.waiting: collections.deque[asyncio.Future[bytes]] = collections.deque()
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def request(self, command: int, body: bytes) -> asyncio.Future[bytes]:
        assert self.transport is not None
        future = asyncio.get_running_loop().create_future()
        self.transport.write(HEADER.pack(MAGIC, 1, command, len(body)) + body)
        self.waiting.append(future)
        return future

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        at = 0
        while len(buf) - at >= 8:
            magic, _, _, length = HEADER.unpack_from(buf, at)
            if magic != MAGIC or length > MAX_BODY:
                raise ValueError("bad frame")
            if len(buf) - at < 8 + length:
                break
            future = self.waiting.popleft()
            if not future.done():
                future.set_result(bytes(buf[at + 8 : at + 8 + length]))
            at += 8 + length
        del buf[:at]


async def asyncio_shared_client(addr: str, n: int, batch: int) -> float:
    """`batch` concurrent requests at a time on the pure-asyncio shared client."""
    host, port = addr.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(AsyncioShared, host, int(port))
    body = b"x" * 32
    started = time.perf_counter()
    for _ in range(n // batch):
        replies = await asyncio.gather(*(client.request(1, body) for _ in range(batch)))
        assert len(replies) == batch
    rate = n / (time.perf_counter() - started)
    transport.close()
    return rate


async def gather_floor(n: int, batch: int) -> float:
    """`asyncio.gather` of `batch` futures resolved at once, with no IO at all:
    the most any client awaited through `gather` can reach."""
    loop = asyncio.get_running_loop()

    def resolve(futures: list[asyncio.Future[bytes]]) -> None:
        for future in futures:
            future.set_result(b"")

    started = time.perf_counter()
    for _ in range(n // batch):
        futures = [loop.create_future() for _ in range(batch)]
        loop.call_soon(resolve, futures)
        await asyncio.gather(*futures)
    return n / (time.perf_counter() - started)


async def gather_client(addr: str, n: int, batch: int) -> float:
    """`batch` concurrent `request()` calls at a time, by `asyncio.gather`."""
    body = b"x" * 32
    client = await gopro.AsyncClient.connect(addr)
    started = time.perf_counter()
    for _ in range(n // batch):
        replies = await asyncio.gather(*(client.request(1, body) for _ in range(batch)))
        assert len(replies) == batch
    rate = n / (time.perf_counter() - started)
    await client.close()
    return rate


async def awaited_client(addr: str, n: int) -> float:
    """One `await client.request()` at a time, as a caller writes it."""
    body = b"x" * 32
    client = await gopro.AsyncClient.connect(addr)
    started = time.perf_counter()
    for _ in range(n):
        reply = await client.request(1, body)
        assert len(reply.body) == 45
    rate = n / (time.perf_counter() - started)
    await client.close()
    return rate


def threads_client(addr: str, n: int, threads: int) -> float:
    """`threads` threads sharing one `Client`, a request at a time each."""
    body = b"x" * 32
    with gopro.Client(addr) as client:
        def work() -> None:
            for _ in range(n // threads):
                client.request(1, body)

        pool = [threading.Thread(target=work) for _ in range(threads)]
        started = time.perf_counter()
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        return n / (time.perf_counter() - started)


# ----------------------------------------------------------------- servers

PREFIX = b"Server says: "


def message(frame: gopro.Frame) -> bytes:
    return PREFIX + frame.body


class StructServer(asyncio.Protocol):
    """A pure-asyncio server with the same handler, batching its replies."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        out = []
        pos, end = 0, len(buf)
        while end - pos >= 8:
            magic, version, command, length = HEADER.unpack_from(buf, pos)
            if magic != MAGIC or length > MAX_BODY:
                self.transport.close()
                return
            if end - pos - 8 < length:
                break
            body = bytes(buf[pos + 8 : pos + 8 + length])
            pos += 8 + length
            if command == 0:
                reply = body
            elif command == 1:
                reply = PREFIX + body
            else:
                reply = b"unknown command: %d" % command
                command = 3
            out.append(HEADER.pack(MAGIC, 1, command, len(reply)))
            out.append(reply)
        del buf[:pos]
        if out:
            self.transport.write(b"".join(out))  # type: ignore[attr-defined]


def run_struct_server(ready: list[str], stop: threading.Event) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(StructServer, "127.0.0.1", 0)
        ready.append("127.0.0.1:%d" % server.sockets[0].getsockname()[1])
        while not stop.is_set():
            await asyncio.sleep(0.05)
        server.close()
        await server.wait_closed()

    asyncio.run(main())


def cpu_seconds() -> float:
    """CPU time of this process (its threads: the server under test), not
    of the load generator, which runs in a child."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load(
    addr: str, seconds: str, conns: int, pipeline: int, cpu: Callable[[], float] = cpu_seconds
) -> tuple[float, float]:
    """Replies/s, and replies per CPU-second of the server: on two cores the
    load generator can saturate first, and then replies/s says little."""
    before = cpu()
    out = subprocess.run(
        [GOPRO_BIN, "bench", "--addr", addr, "--json", "--duration", seconds,
         "--conns", str(conns), "--pipeline", str(pipeline), "--threads", "1"],
        capture_output=True, text=True, check=True,
    )
    # check=True: `gopro bench` exits non-zero on any wrong reply.
    used = cpu() - before
    result = json.loads(out.stdout)
    return float(result["replies_per_sec"]), result["replies"] / used


def bench_servers(seconds: str, conns: int, pipeline: int) -> tuple[tuple[float, float], tuple[float, float]]:
    server = gopro.Server("127.0.0.1:0")
    server.handler(gopro.Command.MESSAGE, message)
    with server:
        ours = load(server.local_addr, seconds, conns, pipeline)
    ready: list[str] = []
    stop = threading.Event()
    thread = threading.Thread(target=run_struct_server, args=(ready, stop))
    thread.start()
    while not ready:
        time.sleep(0.01)
    try:
        theirs = load(ready[0], seconds, conns, pipeline)
    finally:
        stop.set()
        thread.join()
    return ours, theirs


def start_rust_server(threads: int = 0) -> tuple[subprocess.Popen[str], str]:
    args = ["--threads", str(threads)] if threads else []
    proc = subprocess.Popen(
        [GOPRO_BIN, "serve", "--listen", "127.0.0.1:0", *args], stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        match = re.search(r"listening on (\S+:\d+)", re.sub(r"\x1b\[[0-9;]*m", "", line))
        if match:
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, match.group(1)
    raise RuntimeError("gopro serve did not start")


class Rounds:
    """Rates measured in rounds, each baseline next to what it is compared
    with, so that a slow spell of the machine weighs on both sides: the
    ratio reported is the median of the rounds' ratios."""

    def __init__(self) -> None:
        self.rates: dict[str, list[float]] = {}

    def add(self, key: str, rate: float) -> None:
        self.rates.setdefault(key, []).append(rate)

    def row(self, work: str, name: str, ours: str, base: str, theirs: str, unit: str) -> str:
        a, b = self.rates[ours], self.rates[theirs]
        ratios = sorted(x / y for x, y in zip(a, b))
        spread = f" ({ratios[0]:.1f}–{ratios[-1]:.1f})" if len(ratios) > 1 else ""
        return (
            f"| {work} | {name}: {statistics.median(a) / 1e3:,.0f} k {unit} "
            f"| {base}: {statistics.median(b) / 1e3:,.0f} k {unit} "
            f"| **{statistics.median(ratios):.1f}×**{spread} |"
        )


def shared(rounds: int, n: int) -> list[str]:
    """One client shared by many callers: tasks (gather) and threads."""
    r = Rounds()
    proc, addr = start_rust_server()
    try:
        for _ in range(rounds):
            r.add("asyncio 64", asyncio.run(asyncio_struct_client(addr, n, 64)))
            r.add("gather 64", asyncio.run(gather_client(addr, n, 64)))
            r.add("asyncio gather 64", asyncio.run(asyncio_shared_client(addr, n, 64)))
            r.add("floor 64", asyncio.run(gather_floor(n, 64)))
            r.add("asyncio 1", asyncio.run(asyncio_struct_client(addr, n // 10, 1)))
            r.add("awaited 1", asyncio.run(awaited_client(addr, n // 10)))
            r.add("threads 1", threads_client(addr, n // 10, 1))
            r.add("threads 8", threads_client(addr, n // 2, 8))
    finally:
        proc.terminate()
        proc.wait()
    work = "requests on one connection to gopro serve"
    return [
        r.row(work, "`asyncio.gather` of 64 `AsyncClient.request`", "gather 64", "asyncio + struct, 64 pipelined", "asyncio 64", "replies/s"),
        r.row(work, "`asyncio.gather` of 64 `AsyncClient.request`", "gather 64", "`asyncio.gather` of 64 requests, pure-asyncio shared client", "asyncio gather 64", "replies/s"),
        r.row("no IO", "`asyncio.gather` of 64 `AsyncClient.request`", "gather 64", "`asyncio.gather` of 64 futures resolved at once", "floor 64", "replies/s"),
        r.row(work, "`await AsyncClient.request`, one at a time", "awaited 1", "asyncio + struct, one at a time", "asyncio 1", "replies/s"),
        r.row(work, "8 threads sharing one `Client`", "threads 8", "one thread", "threads 1", "replies/s"),
    ]


def main() -> None:
    quick = "--quick" in sys.argv
    if "--shared" in sys.argv:
        rows = shared(2 if quick else 5, 64_000 if quick else 256_000)
        print("| work | gopro | baseline | ratio |")
        print("|---|---:|---:|---:|")
        print("\n".join(rows))
        return
    rounds = 2 if quick else 5
    n_decode = 200_000 if quick else 1_000_000
    n_requests = 50_000 if quick else 200_000
    seconds = "1s" if quick else "3s"
    r = Rounds()

    data = gopro.encode(1, b"x" * 32) * n_decode
    for _ in range(rounds):
        r.add("struct", decode_theirs(data, n_decode))
        r.add("list", decode_ours(data, n_decode, batch=False))
        r.add("frames", decode_ours(data, n_decode, batch=True))
    del data

    batch = 1000
    proc, addr = start_rust_server()
    try:
        for _ in range(rounds):
            r.add("asyncio client", asyncio.run(asyncio_struct_client(addr, n_requests, batch)))
            r.add("Client", sync_client(addr, n_requests, batch))
            r.add("AsyncClient", asyncio.run(async_client(addr, n_requests, batch)))
            r.add("Client.request_many", sync_client_many(addr, n_requests, batch))
            r.add("AsyncClient.request_many", asyncio.run(async_client_many(addr, n_requests, batch)))
    finally:
        proc.terminate()
        proc.wait()

    loads = ((16, 1), (4, 32))
    for _ in range(rounds):
        for conns, pipeline in loads:
            (ours, ours_cpu), (theirs, theirs_cpu) = bench_servers(seconds, conns, pipeline)
            r.add(f"ours {conns}", ours)
            r.add(f"ours cpu {conns}", ours_cpu)
            r.add(f"theirs {conns}", theirs)
            r.add(f"theirs cpu {conns}", theirs_cpu)
            # The floor under any Python server here: the Rust server, no Python.
            proc, addr = start_rust_server(threads=1)
            try:
                _, rust_cpu = load(addr, seconds, conns, pipeline, cpu=lambda: proc_cpu_seconds(proc.pid))
            finally:
                proc.terminate()
                proc.wait()
            r.add(f"rust cpu {conns}", rust_cpu)

    decode = f"decode {n_decode:,} frames, 32 B bodies, one bytes"
    clients = f"pipelined requests ({batch} in flight) to gopro serve"
    rows = [
        r.row(decode, "`list(decoder)`", "list", "struct loop", "struct", "frames/s"),
        r.row(decode, "`decoder.frames()`", "frames", "struct loop", "struct", "frames/s"),
        r.row(clients, "`Client.send`/`recv` per request", "Client", "asyncio + struct", "asyncio client", "replies/s"),
        r.row(clients, "`AsyncClient.send`/`recv` per request", "AsyncClient", "asyncio + struct", "asyncio client", "replies/s"),
        r.row(clients, "`Client.request_many`", "Client.request_many", "asyncio + struct", "asyncio client", "replies/s"),
        r.row(clients, "`AsyncClient.request_many`", "AsyncClient.request_many", "asyncio + struct", "asyncio client", "replies/s"),
    ]
    for conns, pipeline in loads:
        work = f"server, Python MESSAGE handler, {conns} conns × {pipeline}"
        base = "asyncio Protocol + struct"
        rows += [
            r.row(work, "`gopro.Server`", f"ours {conns}", base, f"theirs {conns}", "replies/s"),
            r.row("the same, per server CPU-second", "`gopro.Server`", f"ours cpu {conns}", base, f"theirs cpu {conns}", "replies"),
            r.row("the same, per server CPU-second", "`gopro serve` (Rust, no Python)", f"rust cpu {conns}", base, f"theirs cpu {conns}", "replies"),
        ]
    rows += shared(rounds, n_requests)
    print(f"Median of {rounds} rounds; in brackets, the lowest and highest round.\n")
    print("| work | gopro | baseline | ratio |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
