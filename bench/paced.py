#!/usr/bin/env python3
"""A paced HTTP load: CONNS clients, each sending one GET every CONNS/RATE seconds, for
SECONDS; prints the achieved rate and latency percentiles (ms). MODE `keepalive` (the default)
keeps one HTTP/1.1 connection per client, as Prometheus and browsers do; `close` opens a new
HTTP/1.0 connection per request.

usage: paced.py URL [RATE=200] [CONNS=32] [SECONDS=20] [MODE=keepalive|close]
"""
import socket, sys, threading, time
from urllib.parse import urlparse

url = urlparse(sys.argv[1])
rate = float(sys.argv[2]) if len(sys.argv) > 2 else 200
conns = int(sys.argv[3]) if len(sys.argv) > 3 else 32
seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 20
keepalive = (sys.argv[5] if len(sys.argv) > 5 else "keepalive") == "keepalive"
path = url.path or "/"
version = "HTTP/1.1" if keepalive else "HTTP/1.0"
request = f"GET {path} {version}\r\nHost: {url.hostname}\r\n\r\n".encode()
latencies, errors, lock = [], [0], threading.Lock()

def one(conn):
    """One request on `conn` (a socket and its buffered reader) or on a new connection."""
    if conn is None:
        s = socket.create_connection((url.hostname, url.port), timeout=10)
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        s.close()
        return data.startswith(b"HTTP/1.1 200") or data.startswith(b"HTTP/1.0 200")
    s, reader = conn
    s.sendall(request)
    status = reader.readline()
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    reader.read(length)
    return status.startswith(b"HTTP/1.1 200")

def client(offset):
    conn = None
    if keepalive:
        s = socket.create_connection((url.hostname, url.port), timeout=10)
        conn = (s, s.makefile("rb"))
    period = conns / rate
    next_at = start + offset * period / conns
    while True:
        now = time.perf_counter()
        if now - start > seconds:
            return
        if next_at > now:
            time.sleep(next_at - now)
        t0 = time.perf_counter()
        try:
            ok = one(conn)
        except OSError:
            ok = False
        dt = (time.perf_counter() - t0) * 1000
        with lock:
            if ok:
                latencies.append(dt)
            else:
                errors[0] += 1
        next_at += period

start = time.perf_counter()
threads = [threading.Thread(target=client, args=(i,)) for i in range(conns)]
for t in threads: t.start()
for t in threads: t.join()
latencies.sort()
pct = lambda p: latencies[min(len(latencies) - 1, int(len(latencies) * p / 100))]
n = len(latencies)
print(f"{path} ({'keep-alive' if keepalive else 'new connection each'}): {n} ok, {errors[0]} errors, {n / seconds:.0f} req/s; latency ms: "
      f"p50 {pct(50):.2f}  p90 {pct(90):.2f}  p99 {pct(99):.2f}  max {latencies[-1]:.2f}")
