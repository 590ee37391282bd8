"""No references leak over 100,000 requests: Python-side allocations
(tracemalloc) and the process's resident memory stay flat."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

import gopro

N = 100_000
BATCH = 1_000


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run(client: gopro.Client, n: int) -> None:
    body = b"x" * 32
    for _ in range(n // BATCH):
        for _ in range(BATCH):
            client.send(16, body)
        for _ in range(BATCH):
            reply = client.recv()
        assert reply.body == body
        client.request(17, body)
        assert gopro.decode(gopro.encode(1, body)).body == body


def echo_server() -> gopro.Server:
    """Echoes 16 as bytes and 17 as a Frame."""
    server = gopro.Server("127.0.0.1:0")

    @server.handler(16)
    def echo(frame: gopro.Frame) -> bytes:
        return frame.body

    @server.handler(17)
    def as_frame(frame: gopro.Frame) -> gopro.Frame:
        return gopro.Frame(17, frame.body)

    return server


def test_no_leaks_over_100k_requests() -> None:
    server = echo_server()
    with server, gopro.Client(server.local_addr, timeout=30) as client:
        run(client, 10_000)  # warm up: pools, caches, first allocations
        gc.collect()
        rss_before = rss_kib()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        run(client, N)
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        rss_after = rss_kib()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert grown < 256 * 1024, f"Python allocations grew by {grown} bytes"
    # One leaked 32-byte body per request would be over 3 MiB.
    assert rss_after - rss_before < 4 * 1024, f"RSS grew by {rss_after - rss_before} KiB"


async def run_async(client: gopro.AsyncClient, n: int) -> None:
    body = b"x" * 32
    for _ in range(n // BATCH):
        for _ in range(BATCH):
            await client.send(16, body)
        await client.flush()
        for _ in range(BATCH):
            reply = await client.recv()
        assert reply.body == body
        replies = await client.request_many([(16, body)] * 10)
        assert len(replies) == 10
    # Calls that wait, one after another: each has a future of its own.
    for _ in range(n // 20):
        assert (await client.request(17, body)).body == body


def test_async_no_leaks_over_100k_requests() -> None:
    server = echo_server()

    async def main() -> tuple[int, int]:
        async with await gopro.AsyncClient.connect(server.local_addr, timeout=30) as client:
            await run_async(client, 10_000)
            gc.collect()
            rss_before = rss_kib()
            tracemalloc.start()
            before = tracemalloc.take_snapshot()
            await run_async(client, N)
            gc.collect()
            after = tracemalloc.take_snapshot()
            tracemalloc.stop()
            rss_after = rss_kib()
        grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
        return grown, rss_after - rss_before

    with server:
        grown, rss_grown = asyncio.run(main())
    assert grown < 256 * 1024, f"Python allocations grew by {grown} bytes"
    assert rss_grown < 4 * 1024, f"RSS grew by {rss_grown} KiB"
