#!/usr/bin/env python3
"""Times DNS queries to one server (for scripts/bench-dns.sh): dns_probe.py SERVER PORT
TYPE NAME... sends one query per NAME, one after the other, and prints one line per
query: the name, the response code (or "timeout"), and the milliseconds it took."""
import socket
import struct
import sys
import time

TYPES = {"A": 1, "AAAA": 28}
RCODES = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}


def query(ident, name, qtype):
    q = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode("ascii")
    return q + b"\0" + struct.pack("!HH", qtype, 1)


def main():
    server, port, qtype = sys.argv[1], int(sys.argv[2]), TYPES[sys.argv[3]]
    s = socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    for n, name in enumerate(sys.argv[4:]):
        ident = (n * 7919 + 1) & 0xFFFF
        start = time.perf_counter()
        s.sendto(query(ident, name, qtype), (server, port))
        try:
            while True:
                answer, _ = s.recvfrom(4096)
                if answer[:2] == struct.pack("!H", ident):
                    break
            code = RCODES.get(answer[3] & 0x0F, str(answer[3] & 0x0F))
        except socket.timeout:
            code = "timeout"
        print(f"{name} {code} {(time.perf_counter() - start) * 1000:.3f}", flush=True)


if __name__ == "__main__":
    main()
