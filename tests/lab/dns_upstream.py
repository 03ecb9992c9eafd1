#!/usr/bin/env python3
"""A stand-in for the resolver a host used before the node's DNS stub: answers
debian.lab.test A with 203.0.113.80 and everything else NXDOMAIN, on UDP ADDR PORT.
Only what the labs need; not a DNS server."""
import socket
import struct
import sys

KNOWN = {"debian.lab.test": bytes([203, 0, 113, 80])}


def question(packet):
    """The question's name (lower case), type, and where the question ends."""
    labels, i = [], 12
    while packet[i]:
        n = packet[i]
        labels.append(packet[i + 1:i + 1 + n].decode("ascii").lower())
        i += 1 + n
    qtype, _ = struct.unpack("!HH", packet[i + 1:i + 5])
    return ".".join(labels), qtype, i + 5


def answer(packet):
    ident = packet[:2]
    name, qtype, end = question(packet)
    addr = KNOWN.get(name) if qtype == 1 else None
    flags = 0x8180 if name in KNOWN else 0x8183  # response, RD, RA; NXDOMAIN if unknown
    header = ident + struct.pack("!HHHHH", flags, 1, 1 if addr else 0, 0, 0)
    body = packet[12:end]
    if addr:
        body += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + addr
    return header + body


def main():
    family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((sys.argv[1], int(sys.argv[2])))
    while True:
        packet, peer = s.recvfrom(4096)
        try:
            s.sendto(answer(packet), peer)
        except (IndexError, struct.error, UnicodeDecodeError):
            pass


if __name__ == "__main__":
    main()
