#!/usr/bin/env python3
"""Plain UDP tools for the NAT lab (tests/lab/nat_selftest.sh): no hipbone involved.

serve PORT...      A reflector for the public hosts (R, S). On every port it answers:
                     who               -> "seen IP:PORT", the source it saw, from the same port
                     via PORT TOKEN    -> TOKEN to the source, sent from its socket on PORT
                     tell IP:PORT TOKEN -> "fwd SRC TOKEN" to IP:PORT (another reflector, which
                                          then sends TOKEN to SRC from its own address)
                     fwd IP:PORT TOKEN -> TOKEN to IP:PORT from this port (also how a test makes
                                          R send on its own, through 127.0.0.1)
                   Anything else (keepalives) is ignored.
agent              Reads commands on stdin, answers each with one line on stdout, so that a
                   shell can keep UDP sockets open inside a namespace across steps:
                     open NAME [PORT]            -> the local port
                     send NAME IP:PORT WORDS...  -> ok
                     ask NAME IP:PORT SECS WORDS... -> the first reply from IP:PORT, or timeout
                     expect NAME PREFIX SECS     -> "IP:PORT TEXT" of the first datagram whose
                                                    text starts with PREFIX, or timeout
                     close NAME / quit
                   Datagrams that arrive while waiting for something else are kept for a later
                   expect.
send IP:PORT WORDS...  One datagram, from an ephemeral port.
"""
import select
import socket
import sys
import time


def addr(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


def fmt(a):
    return f"{a[0]}:{a[1]}"


def serve(ports):
    socks = {}
    for p in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", p))
        socks[p] = s
    by_fd = {s.fileno(): s for s in socks.values()}
    while True:
        ready, _, _ = select.select(list(by_fd), [], [])
        for fd in ready:
            s = by_fd[fd]
            data, src = s.recvfrom(2048)
            words = data.decode(errors="replace").split()
            try:
                if words[:1] == ["who"]:
                    s.sendto(f"seen {fmt(src)}".encode(), src)
                elif words[:1] == ["via"]:
                    socks[int(words[1])].sendto(words[2].encode(), src)
                elif words[:1] == ["tell"]:
                    s.sendto(f"fwd {fmt(src)} {words[2]}".encode(), addr(words[1]))
                elif words[:1] == ["fwd"]:
                    s.sendto(words[2].encode(), addr(words[1]))
            except (IndexError, ValueError, KeyError, OSError) as e:
                print(f"serve: {words}: {e}", file=sys.stderr, flush=True)


class Agent:
    def __init__(self):
        self.socks = {}
        self.inbox = {}

    def _recv(self, name, deadline, want):
        """The first datagram on socket NAME for which want(src, text) holds, else None."""
        for i, (src, text) in enumerate(self.inbox[name]):
            if want(src, text):
                del self.inbox[name][i]
                return src, text
        s = self.socks[name]
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([s], [], [], left)
            if not ready:
                return None
            data, src = s.recvfrom(2048)
            text = data.decode(errors="replace")
            if want(src, text):
                return src, text
            self.inbox[name].append((src, text))

    def run(self, words):
        cmd = words[0]
        if cmd == "open":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("0.0.0.0", int(words[2]) if len(words) > 2 else 0))
            self.socks[words[1]] = s
            self.inbox[words[1]] = []
            return str(s.getsockname()[1])
        if cmd == "close":
            self.socks.pop(words[1]).close()
            self.inbox.pop(words[1])
            return "ok"
        if cmd == "send":
            self.socks[words[1]].sendto(" ".join(words[3:]).encode(), addr(words[2]))
            return "ok"
        if cmd == "ask":
            peer = addr(words[2])
            self.socks[words[1]].sendto(" ".join(words[4:]).encode(), peer)
            got = self._recv(words[1], time.monotonic() + float(words[3]),
                             lambda src, _: src == peer)
            return got[1] if got else "timeout"
        if cmd == "expect":
            got = self._recv(words[1], time.monotonic() + float(words[3]),
                             lambda _, text: text.startswith(words[2]))
            return f"{fmt(got[0])} {got[1]}" if got else "timeout"
        return f"error: unknown command {cmd}"


def agent():
    a = Agent()
    for line in iter(sys.stdin.readline, ""):
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        try:
            out = a.run(words)
        except (IndexError, ValueError, KeyError, OSError) as e:
            out = f"error: {e}"
        print(out, flush=True)


def main():
    mode = sys.argv[1]
    if mode == "serve":
        serve([int(p) for p in sys.argv[2:]])
    elif mode == "agent":
        agent()
    elif mode == "send":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(" ".join(sys.argv[3:]).encode(), addr(sys.argv[2]))
    else:
        sys.exit(f"usage: {sys.argv[0]} serve PORT... | agent | send IP:PORT WORDS...")


if __name__ == "__main__":
    main()
