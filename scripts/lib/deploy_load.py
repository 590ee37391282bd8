"""Python clients for scripts/test-deploy.sh (gopro servers behind HAProxy).

``load``: reconnecting ``gopro.Client`` threads and ``gopro.AsyncClient``
tasks make MESSAGE requests, each with a body of its own, for DURATION
seconds, and check every reply against its request. Prints one JSON object:
requests, replies, wrong replies, errors by exception class, the clients'
reconnects, re-sent and lost counters, and how many workers' last call
failed. Exits 0 whatever happened: the caller judges the figures.

``probe``: one plain socket, bound to SOURCE, sends a MESSAGE through ADDR
and reads its reply; prints the socket's own address (what a server behind
the balancer should log as the peer). Exits 1 if no reply came.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import gopro

PREFIX = b"Server says: "


@dataclass
class Tally:
    """One worker's outcomes."""

    requests: int = 0
    replies: int = 0
    wrong: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    last_failed: bool = False
    first_wrong: str | None = None

    def outcome(self, body: bytes, result: gopro.Frame | BaseException) -> None:
        self.requests += 1
        if isinstance(result, BaseException):
            self.errors[type(result).__name__] += 1
            self.last_failed = True
            return
        self.last_failed = False
        if result.command == gopro.Command.MESSAGE and result.body == PREFIX + body:
            self.replies += 1
            return
        self.wrong += 1
        if self.first_wrong is None:
            self.first_wrong = f"sent {body!r}, got command {result.command} {result.body!r}"


def body_for(tag: str, seq: int, size: int) -> bytes:
    """A body no other request of the run has, padded to `size` bytes."""
    body = f"{tag}-{seq}|".encode()
    return body + b"." * max(0, size - len(body))


def thread_worker(client: gopro.Client, tag: str, until: float, size: int, tally: Tally) -> None:
    seq = 0
    while time.monotonic() < until:
        seq += 1
        body = body_for(tag, seq, size)
        try:
            result: gopro.Frame | BaseException = client.request(gopro.Command.MESSAGE, body)
        except gopro.GoproError as e:
            result = e
        tally.outcome(body, result)


async def async_load(
    addr: str, tasks: int, until: float, size: int, tallies: list[Tally]
) -> gopro.ClientStats:
    client = await gopro.AsyncClient.connect(addr, timeout=10, reconnect=True)

    async def worker(tag: str, tally: Tally) -> None:
        seq = 0
        while time.monotonic() < until:
            seq += 1
            body = body_for(tag, seq, size)
            try:
                result: gopro.Frame | BaseException = await client.request(
                    gopro.Command.MESSAGE, body
                )
            except gopro.GoproError as e:
                result = e
            tally.outcome(body, result)

    await asyncio.gather(*(worker(f"a{i}", t) for i, t in enumerate(tallies)))
    stats = client.stats
    await client.close()
    return stats


def load(args: argparse.Namespace) -> int:
    until = time.monotonic() + args.duration
    clients = [gopro.Client(args.addr, timeout=10, reconnect=True) for _ in range(args.clients)]
    sync_tallies = [Tally() for _ in range(args.threads)]
    threads = [
        threading.Thread(
            target=thread_worker,
            args=(clients[i % len(clients)], f"t{i}", until, args.size, tally),
        )
        for i, tally in enumerate(sync_tallies)
    ]
    async_tallies = [Tally() for _ in range(args.tasks)]
    async_stats: list[gopro.ClientStats] = []
    if args.tasks:
        threads.append(
            threading.Thread(
                target=lambda: async_stats.append(
                    asyncio.run(async_load(args.addr, args.tasks, until, args.size, async_tallies))
                )
            )
        )
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tallies = sync_tallies + async_tallies
    stats = [c.stats for c in clients] + async_stats
    for client in clients:
        client.close()
    if args.tasks and not async_stats:
        print("deploy_load: the asyncio client did not finish", file=sys.stderr)
        return 1
    errors: Counter[str] = Counter()
    for tally in tallies:
        errors.update(tally.errors)
    report = {
        "requests": sum(t.requests for t in tallies),
        "replies": sum(t.replies for t in tallies),
        "wrong": sum(t.wrong for t in tallies),
        "first_wrong": next((t.first_wrong for t in tallies if t.first_wrong), None),
        "errors": dict(errors),
        "reconnects": sum(s.reconnects for s in stats),
        "resent": sum(s.resent for s in stats),
        "lost": sum(s.lost for s in stats),
        "workers": len(tallies),
        "failing_at_end": sum(t.last_failed for t in tallies),
    }
    print(json.dumps(report))
    return 0


def probe(args: argparse.Namespace) -> int:
    host, port = args.addr.rsplit(":", 1)
    body = b"probe"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.bind((args.source, 0))
        sock.connect((host, int(port)))
        local = "%s:%d" % sock.getsockname()
        sock.sendall(gopro.encode(gopro.Command.MESSAGE, body))
        decoder = gopro.Decoder()
        while True:
            try:
                chunk = sock.recv(4096)
            except OSError as e:
                print(f"probe from {local}: {e}", file=sys.stderr)
                return 1
            if not chunk:
                print(f"probe from {local}: closed without a reply", file=sys.stderr)
                return 1
            decoder.feed(chunk)
            for frame in decoder:
                if frame.command != gopro.Command.MESSAGE or frame.body != PREFIX + body:
                    print(f"probe from {local}: wrong reply {frame!r}", file=sys.stderr)
                    return 1
                print(local)
                return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("load", help="reconnecting clients, every reply checked")
    p.add_argument("--addr", required=True)
    p.add_argument("--duration", type=float, required=True, help="seconds")
    p.add_argument("--clients", type=int, default=2, help="gopro.Client connections")
    p.add_argument("--threads", type=int, default=4, help="threads sharing them")
    p.add_argument("--tasks", type=int, default=4, help="tasks on one AsyncClient")
    p.add_argument("--size", type=int, default=32, help="body bytes (at least)")
    p = sub.add_parser("probe", help="one request from a chosen source address")
    p.add_argument("--addr", required=True)
    p.add_argument("--source", default="127.0.0.1")
    args = parser.parse_args()
    if args.what == "load":
        if args.clients < 1 or args.threads < 0 or args.tasks < 0:
            parser.error("--clients must be at least 1, --threads and --tasks at least 0")
        return load(args)
    return probe(args)


if __name__ == "__main__":
    sys.exit(main())
