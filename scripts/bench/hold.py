#!/usr/bin/env python3
"""Opens many connections to a server and holds them, optionally after
sending a prefix (e.g. a header announcing a large body and one body byte).

Prints "held N" once every connection is open (and the prefix written),
then holds them until stdin closes or --seconds pass."""

import argparse
import resource
import socket
import sys
import time


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("addr")
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--prefix", default="", help="hex bytes each connection sends")
    p.add_argument("--seconds", type=float, default=60.0)
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    host, port = args.addr.rsplit(":", 1)
    prefix = bytes.fromhex(args.prefix)
    conns = []
    for _ in range(args.count):
        s = socket.create_connection((host, int(port)))
        if prefix:
            s.sendall(prefix)
        conns.append(s)
    print(f"held {len(conns)}", flush=True)
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        if sys.stdin.readline() == "":
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
