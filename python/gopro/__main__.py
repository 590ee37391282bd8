"""``python -m gopro serve|send|ping``: the ``gopro`` command, in Python.

The options, output and exit codes are those of the Rust ``gopro`` command.
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import time
from typing import Sequence

import gopro

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|min|s|m|h)")


def duration(text: str) -> float:
    """Seconds from ``2s``, ``500ms``, ``1m30s`` (a bare number is seconds)."""
    try:
        return float(text)
    except ValueError:
        pass
    pos, total = 0, 0.0
    while pos < len(text):
        match = _PART.match(text, pos)
        if not match:
            raise argparse.ArgumentTypeError(
                f"invalid duration {text!r} (write durations like 2s or 500ms)"
            )
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos == 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}")
    return total


def _command_name(command: int) -> str:
    return command.name if isinstance(command, gopro.Command) else str(command)


def serve(args: argparse.Namespace) -> int:
    server = gopro.Server(
        args.listen,
        read_timeout=args.read_timeout,
        write_timeout=args.write_timeout,
        max_body=args.max_body,
        max_connections=args.max_connections,
        grace=args.grace,
        proxy_protocol=args.trusted_proxies if args.proxy_protocol else None,
    )
    log = logging.getLogger("gopro.server")

    def on_sigterm(signum: int, frame: object) -> None:
        log.info("SIGTERM: shutting down")
        server.shutdown()

    # Before "listening on": whoever waits for that line may send SIGTERM next.
    signal.signal(signal.SIGTERM, on_sigterm)
    server.start()
    log.info("listening on %s", server.local_addr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("SIGINT: shut down")
    log.info("server stopped")
    return 0


def send(args: argparse.Namespace) -> int:
    with gopro.Client(args.addr, timeout=args.timeout, connect_timeout=args.timeout) as client:
        reply = client.request(args.command, args.message.encode())
    print(f"{_command_name(reply.command)} {reply.body.decode('utf-8', 'replace')}")
    return 0


def ping(args: argparse.Namespace) -> int:
    times = []
    with gopro.Client(args.addr, timeout=args.timeout, connect_timeout=args.timeout) as client:
        for seq in range(args.count):
            if seq:
                time.sleep(args.interval)
            started = time.perf_counter()
            client.heartbeat()
            rtt = time.perf_counter() - started
            print(f"HEARTBEAT from {args.addr}: seq={seq} time={rtt * 1e3:.3f} ms", flush=True)
            times.append(rtt)
    if times:
        avg = sum(times) / len(times)
        print(
            f"{len(times)} heartbeats, rtt min/avg/max = "
            f"{min(times) * 1e3:.3f}/{avg * 1e3:.3f}/{max(times) * 1e3:.3f} ms"
        )
    return 0


def command_code(text: str) -> int:
    try:
        code = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid command {text!r}") from None
    if not 0 <= code <= 255:
        raise argparse.ArgumentTypeError(f"command must be 0-255, got {code}")
    return code


def _networks(text: str) -> list[str]:
    """``10.0.0.0/8,127.0.0.1`` as a list; each item is the core's to check."""
    return text.split(",")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gopro", description="The GoPro binary TCP protocol: server and tools."
    )
    p.add_argument("-V", "--version", action="version", version=f"gopro {gopro.__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("serve", help="Run a GoPro server (HEARTBEAT echo, MESSAGE echo, LOGIN).")
    s.add_argument("--listen", default="127.0.0.1:8888", help="address to listen on (port 0 picks a free port)")
    s.add_argument("--read-timeout", type=duration, default=60.0, help="time for a whole frame to arrive [60s]")
    s.add_argument("--write-timeout", type=duration, default=10.0, help="time for the client to take replies [10s]")
    s.add_argument("--max-body", type=int, default=gopro.DEFAULT_MAX_BODY, help="largest body, in bytes [10 MiB]")
    s.add_argument("--max-connections", type=int, default=10_000, help="connections served at once [10000]")
    s.add_argument("--grace", type=duration, default=10.0, help="time to finish on shutdown [10s]")
    s.add_argument(
        "--proxy-protocol",
        action="store_true",
        help="connections come through a balancer that sends a PROXY header (v1 or v2) first; "
        "only --trusted-proxies may connect",
    )
    s.add_argument(
        "--trusted-proxies",
        action="extend",
        type=_networks,
        metavar="CIDR[,CIDR...]",
        help="the balancers' addresses or networks, e.g. 10.0.0.0/8,127.0.0.1",
    )
    s.set_defaults(run=serve)

    c = sub.add_parser("send", help="Send one frame and print the reply (COMMAND body).")
    c.add_argument("--addr", default="127.0.0.1:8888", help="server address [127.0.0.1:8888]")
    c.add_argument("--command", type=command_code, default=1, help="command code to send [1, MESSAGE]")
    c.add_argument("--timeout", type=duration, default=10.0, help="time to connect and for the reply [10s]")
    c.add_argument("message", help="the body to send")
    c.set_defaults(run=send)

    g = sub.add_parser("ping", help="Measure HEARTBEAT round-trip times.")
    g.add_argument("--addr", default="127.0.0.1:8888", help="server address [127.0.0.1:8888]")
    g.add_argument("--count", type=int, default=4, help="heartbeats to send [4]")
    g.add_argument("--interval", type=duration, default=1.0, help="pause between heartbeats [1s]")
    g.add_argument("--timeout", type=duration, default=5.0, help="time to connect and for each reply [5s]")
    g.set_defaults(run=ping)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    # Each needs the other, as for the Rust command.
    if args.cmd == "serve" and args.proxy_protocol != (args.trusted_proxies is not None):
        p.error("--proxy-protocol and --trusted-proxies go together")
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.run(args))
    except (gopro.GoproError, OSError) as e:
        print(f"gopro: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
