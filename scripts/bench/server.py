#!/usr/bin/env python3
"""Runs `gopro bench` against `gopro serve` and three baselines, with the
server pinned to one core and the load generator to the other, and reports
server CPU time per reply (from /proc/PID/stat) and resident memory.

Usage: scripts/bench-server.sh [--duration 3s] [--idle 10000] [--stalled 1000]
       scripts/bench-server.sh --tls [--rounds 4]   (TLS: gopro against itself
       in plaintext and against Go's crypto/tls server, per reply and per handshake)
"""

import argparse
import json
import statistics
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOPRO = os.path.join(ROOT, "target/release/gopro")
EXAMPLES = os.path.join(ROOT, "target/release/examples")
GO_SERVER = os.path.join(ROOT, "interop/go/bin/server")
HOLD = os.path.join(ROOT, "scripts/bench/hold.py")
TICK = os.sysconf("SC_CLK_TCK")
SERVER_CPU = "0"
LOAD_CPU = "1" if os.cpu_count() and os.cpu_count() > 1 else "0"

SERVERS = {
    "gopro": [GOPRO, "serve", "--listen", "127.0.0.1:0", "--threads", "1", "--max-connections", "20000"],
    "tokio byte-echo": [os.path.join(EXAMPLES, "echo_baseline"), "127.0.0.1:0"],
    "tokio + LengthDelimitedCodec": [os.path.join(EXAMPLES, "ldc_baseline"), "127.0.0.1:0"],
    "Go (bufio, batched flush)": [GO_SERVER, "-addr", "127.0.0.1:0", "-tuned"],
}

WORKLOADS = [
    # (connections, pipeline, body size)
    (1, 1, 32),
    (50, 1, 32),
    (50, 64, 32),
    (4, 4, 64 * 1024),
]


def proc_cpu_seconds(pid):
    """User + system CPU time of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class Server:
    def __init__(self, name):
        self.name = name
        env = dict(os.environ, GOPRO_LOG="info", GOMAXPROCS="1")
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU] + SERVERS[name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        stream = self.proc.stderr if name.startswith("gopro") else self.proc.stdout
        while True:
            line = stream.readline()
            if not line:
                raise RuntimeError(f"{name} did not start")
            if "listening on " in line:
                self.addr = line.split("listening on ", 1)[1].strip()
                break
        # Drain the other pipe so that logging never blocks the server.
        import threading

        for s in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=lambda s=s: [None for _ in s], daemon=True).start()

    def cpu_seconds(self):
        return proc_cpu_seconds(self.proc.pid)

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def load(server, command, conns, pipeline, size, duration, extra=()):
    before = server.cpu_seconds()
    out = subprocess.run(
        ["taskset", "-c", LOAD_CPU, GOPRO, "bench", "--addr", server.addr, "--conns", str(conns),
         "--pipeline", str(pipeline), "--size", str(size), "--duration", duration,
         "--command", command, "--json", "--threads", "1", *extra],
        capture_output=True, text=True, check=False,
    )
    cpu = server.cpu_seconds() - before
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    report = json.loads(out.stdout)
    report["cpu_ns_per_reply"] = cpu * 1e9 / max(report["replies"], 1)
    report["cpu_us_per_connection"] = cpu * 1e6 / max(report.get("connections", 1), 1)
    return report


def hold(server, count, prefix=""):
    """RSS growth (KiB) of the server while `count` connections are held."""
    base = server.rss_kib()
    holder = subprocess.Popen(
        ["taskset", "-c", LOAD_CPU, sys.executable, HOLD, server.addr, "--count", str(count),
         "--prefix", prefix, "--seconds", "120"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    line = holder.stdout.readline()
    if not line.startswith("held"):
        holder.kill()
        return None
    time.sleep(1.5)
    grown = server.rss_kib() - base
    holder.stdin.close()
    holder.wait(timeout=60)
    time.sleep(0.5)
    return grown


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--duration", default="3s")
    p.add_argument("--idle", type=int, default=10000)
    p.add_argument("--stalled", type=int, default=1000)
    p.add_argument("--json", help="also write the raw results here")
    p.add_argument("--rounds", type=int, default=0,
                   help="then alternate gopro and the byte-echo at 50x64 this many times, "
                        "and report the median of the per-round ratios (steadier than one run)")
    p.add_argument("--only-rounds", action="store_true",
                   help="skip the full table: only the rounds (--rounds, default 5)")
    p.add_argument("--tls", action="store_true",
                   help="TLS: gopro plaintext, gopro TLS and Go crypto/tls, per reply at 50x64 "
                        "and per full handshake, alternating for --rounds rounds (default 3)")
    args = p.parse_args()
    if args.tls:
        tls_rounds(args)
        return
    if args.only_rounds:
        # Rounds are all this runs: at least one, five unless told.
        args.rounds = args.rounds or 5
        rounds(args)
        return

    results = {}
    for name in SERVERS:
        server = Server(name)
        try:
            rows = {}
            for conns, pipeline, size in WORKLOADS:
                for command in ("heartbeat", "message"):
                    if name == "tokio byte-echo" and command == "message":
                        continue
                    key = f"{conns}x{pipeline} {size}B {command}"
                    rows[key] = load(server, command, conns, pipeline, size, args.duration)
                    r = rows[key]
                    print(f"{name:30} {key:28} " + (
                        f"{r['replies_per_sec']:>10.0f}/s  cpu {r['cpu_ns_per_reply']:7.1f} ns/reply  "
                        f"p50 {r['p50_us']:8.1f} us  p99 {r['p99_us']:8.1f} us" if "error" not in r else r["error"]),
                        flush=True)
        finally:
            server.stop()
        # Memory is measured on fresh servers: after load, the allocator's
        # high-water mark would hide what connections cost.
        server = Server(name)
        try:
            rows["idle_kib"] = hold(server, args.idle)
        finally:
            server.stop()
        server = Server(name)
        try:
            # A header announcing a 10 MiB body (the largest accepted) plus one
            # body byte, then nothing: the server must not reserve the body.
            rows["stalled_kib"] = hold(server, args.stalled, "474f010100a0000041")
            print(f"{name:30} {args.idle} idle connections: +{rows['idle_kib']} KiB; "
                  f"{args.stalled} stalled 10 MiB headers: +{rows['stalled_kib']} KiB", flush=True)
            results[name] = rows
        finally:
            server.stop()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    report(results, args)
    if args.rounds:
        rounds(args)


def rounds(args):
    """gopro and the byte-echo in turns at 50x64: CPU per reply, per round."""
    ratios = {"heartbeat": [], "message": []}

    def echo_run():
        echo = Server("tokio byte-echo")
        try:
            load(echo, "heartbeat", 50, 64, 32, "1s")
            time.sleep(0.5)  # let the warm-up's connections close
            return [load(echo, "heartbeat", 50, 64, 32, args.duration)["cpu_ns_per_reply"] for _ in range(2)]
        finally:
            echo.stop()

    def gopro_run(commands):
        ours = Server("gopro")
        try:
            load(ours, "heartbeat", 50, 64, 32, "1s")
            time.sleep(0.5)
            return [load(ours, c, 50, 64, 32, args.duration)["cpu_ns_per_reply"] for c in commands]
        finally:
            ours.stop()

    for i in range(args.rounds):
        # Each server is warmed up first (connections, pools, caches), so
        # that no workload pays for starting. A first run after the warm-up
        # costs a few per cent more than a second one, so the byte-echo runs
        # twice too, and gopro's first and second runs are each set against
        # the byte-echo's; which server goes first, and which command first,
        # alternate, so that a drift of the machine favours neither.
        commands = list(ratios) if (i // 2) % 2 == 0 else list(reversed(ratios))
        if i % 2 == 0:
            base = echo_run()
            ns = gopro_run(commands)
        else:
            ns = gopro_run(commands)
            base = echo_run()
        for k, command in enumerate(commands):
            ratios[command].append(ns[k] / base[k])
            print(f"round {i + 1}: 50x64 {command}: gopro {ns[k]:.0f} ns/reply, byte-echo {base[k]:.0f}: {ns[k] / base[k]:.2f}x", flush=True)
    for command, values in ratios.items():
        print(f"50x64 32B {command}: median gopro / byte-echo over {len(values)} rounds: "
              f"{statistics.median(values):.2f}x (from {min(values):.2f}x to {max(values):.2f}x)")


def tls_rounds(args):
    """Server CPU per reply over TLS at 50x64 against gopro's plaintext figure
    and Go's crypto/tls server, and per full handshake against Go's."""
    import tempfile
    pki = tempfile.mkdtemp(prefix="gopro-bench-tls-")
    subprocess.run([os.path.join(ROOT, "scripts/tls-certs.sh"), pki], check=True,
                   stdout=subprocess.DEVNULL)
    cert, key, ca = (os.path.join(pki, f) for f in ("server.pem", "server.key", "ca.pem"))
    SERVERS["gopro TLS"] = SERVERS["gopro"] + ["--tls-cert", cert, "--tls-key", key]
    SERVERS["Go crypto/tls"] = [GO_SERVER, "-addr", "127.0.0.1:0", "-tuned", "-quiet",
                                "-tls-cert", cert, "-tls-key", key]
    tls = ["--tls-ca", ca]
    # Each connection closes after one reply and the next makes a full
    # handshake (no resumption): the server's CPU per connection is that
    # of a handshake, plus one small round trip.
    handshake = ["--reconnect-every", "1", "--tls-no-resumption"]
    names = ["gopro", "gopro TLS", "Go crypto/tls"]
    runs = {n: {"heartbeat": [], "message": [], "handshake": []} for n in names}

    def run(name):
        server = Server(name)
        extra = tls if name != "gopro" else []
        try:
            load(server, "heartbeat", 50, 64, 32, "1s", extra)
            time.sleep(0.5)
            for command in ("heartbeat", "message"):
                r = load(server, command, 50, 64, 32, args.duration, extra)
                runs[name][command].append(r.get("cpu_ns_per_reply"))
                print(f"{name:14} 50x64 32B {command:9} " + (
                    f"{r['replies_per_sec']:>9.0f}/s  cpu {r['cpu_ns_per_reply']:6.0f} ns/reply"
                    if "error" not in r else r["error"]), flush=True)
            if name != "gopro":
                r = load(server, "heartbeat", 4, 1, 32, args.duration, extra + handshake)
                runs[name]["handshake"].append(r.get("cpu_us_per_connection"))
                print(f"{name:14} full handshakes   " + (
                    f"{r['connections']:>9} conns  cpu {r['cpu_us_per_connection']:6.0f} us/handshake"
                    if "error" not in r else r["error"]), flush=True)
        finally:
            server.stop()

    for i in range(args.rounds or 3):
        order = names if i % 2 == 0 else list(reversed(names))
        for name in order:
            run(name)

    def ratio(a, b, key):
        pairs = [x / y for x, y in zip(runs[a][key], runs[b][key]) if x and y]
        if not pairs:
            return "–"
        return f"{statistics.median(pairs):.2f}× ({min(pairs):.2f}–{max(pairs):.2f})"

    print("\n| server CPU, median of per-round ratios | heartbeat | message |")
    print("|---|---:|---:|")
    print(f"| gopro TLS / gopro plaintext, per reply at 50×64 (target ≤ 1.5×) | "
          f"{ratio('gopro TLS', 'gopro', 'heartbeat')} | {ratio('gopro TLS', 'gopro', 'message')} |")
    print(f"| gopro TLS / Go crypto/tls, per reply at 50×64 (target ≤ 0.7×) | "
          f"{ratio('gopro TLS', 'Go crypto/tls', 'heartbeat')} | {ratio('gopro TLS', 'Go crypto/tls', 'message')} |")
    print(f"| gopro TLS / Go crypto/tls, per full handshake (target ≤ 0.8×) | "
          f"{ratio('gopro TLS', 'Go crypto/tls', 'handshake')} | |")
    med = lambda v: statistics.median([x for x in v if x]) if any(v) else float("nan")
    for name in names:
        r = runs[name]
        print(f"{name}: median {med(r['heartbeat']):.0f} / {med(r['message']):.0f} ns per reply"
              + (f", {med(r['handshake']):.0f} us per handshake" if r["handshake"] else ""))


def report(results, args):
    base = results.get("tokio byte-echo", {})
    go = results.get("Go (bufio, batched flush)", {})
    ldc = results.get("tokio + LengthDelimitedCodec", {})
    ours = results.get("gopro", {})
    print("\n| workload | gopro ns/reply | byte-echo | Go | LDC | gopro / byte-echo | gopro / Go | gopro / LDC | p99 gopro / Go |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key, r in ours.items():
        if not isinstance(r, dict) or "error" in r:
            continue
        def ns(rows, k=key):
            v = rows.get(k)
            return v["cpu_ns_per_reply"] if isinstance(v, dict) and "error" not in v else None
        def p99(rows, k=key):
            v = rows.get(k)
            return v["p99_us"] if isinstance(v, dict) and "error" not in v else None
        echo_key = key.replace("message", "heartbeat")
        cells = [ns(ours), ns(base, echo_key), ns(go), ns(ldc)]
        fmt = lambda v: f"{v:.0f}" if v is not None else "–"
        ratio = lambda a, b: f"{a / b:.2f}×" if a is not None and b else "–"
        print(f"| {key} | {fmt(cells[0])} | {fmt(cells[1])} | {fmt(cells[2])} | {fmt(cells[3])} | "
              f"{ratio(cells[0], cells[1])} | {ratio(cells[0], cells[2])} | {ratio(cells[0], cells[3])} | "
              f"{ratio(p99(ours), p99(go))} |")
    print(f"\n| memory | " + " | ".join(results) + " |")
    print("|---|" + "---:|" * len(results))
    print(f"| per idle connection ({args.idle} held) | " + " | ".join(
        f"{r['idle_kib'] * 1024 / args.idle / 1024:.2f} KiB" if r.get("idle_kib") is not None else "–" for r in results.values()) + " |")
    print(f"| {args.stalled} stalled 10 MiB headers, total | " + " | ".join(
        f"{r['stalled_kib'] / 1024:.1f} MiB" if r.get("stalled_kib") is not None else "–" for r in results.values()) + " |")


if __name__ == "__main__":
    main()
