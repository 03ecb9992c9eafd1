#!/usr/bin/env python3
"""Time to first byte of fresh TCP connections, for scripts/bench-directory.sh.

  ttfb.py serve PORT          accept on [::]:PORT and send one byte to every connection
  ttfb.py probe PORT HIT...   connect to each HIT in turn; print "HIT ok MS" (from the
                              start of connect() to the first byte) or "HIT fail WHY"
"""
import socket
import sys
import threading
import time


def serve(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port))
    s.listen(64)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=answer, args=(conn,), daemon=True).start()


def answer(conn):
    try:
        conn.sendall(b"x")
        conn.recv(1)
    except OSError:
        pass
    finally:
        conn.close()


def probe(port, hits):
    for hit in hits:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.settimeout(15)
        start = time.monotonic()
        try:
            s.connect((hit, port))
            got = s.recv(1)
            ms = (time.monotonic() - start) * 1000
            print(f"{hit} ok {ms:.3f}" if got == b"x" else f"{hit} fail no-byte", flush=True)
        except OSError as e:
            print(f"{hit} fail {(e.strerror or str(e)).replace(' ', '-')}", flush=True)
        finally:
            s.close()


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    elif len(sys.argv) >= 4 and sys.argv[1] == "probe":
        probe(int(sys.argv[2]), sys.argv[3:])
    else:
        sys.exit(__doc__)
