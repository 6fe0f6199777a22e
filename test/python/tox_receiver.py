#!/usr/bin/env python3
"""Test peer: a receiver that behaves like the original TouchDesigner "Threaded TCP
Transfer" TOX (written from its protocol description, standard library only).

One file per connection: 2-byte big-endian header length, JSON header, then
`content-length` bytes of MIME base64. Like the original it buffers everything, does no
name checking, writes os.path.join(target_dir, file_name), answers
{"success": true} and never answers false: on any error it just drops the connection.
The original calls base64.decodestring (gone since Python 3.9); this uses decodebytes.

Usage: tox_receiver.py --dir TARGET [--host 127.0.0.1] [--port 0] [--count N]
Prints "LISTENING <port>" once ready, then one line per connection:
"RECEIVED <file_name> <bytes>" or "DROPPED <file_name or -> <reason>".
"""
import argparse
import base64
import json
import os
import socket
import struct
import sys


def recv_exact(conn, n):
    chunks = []
    got = 0
    while got < n:
        chunk = conn.recv(min(n - got, 1 << 20))
        if not chunk:
            raise EOFError("connection closed after %d of %d bytes" % (got, n))
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def frame(obj):
    body = json.dumps(obj).encode("utf-8")
    return struct.pack(">H", len(body)) + body


def handle(conn, target_dir):
    name = "-"
    try:
        (n,) = struct.unpack(">H", recv_exact(conn, 2))
        header = json.loads(recv_exact(conn, n).decode("utf-8"))
        name = header["file_name"]
        payload = recv_exact(conn, header["content-length"])
        data = base64.decodebytes(payload)
        with open(os.path.join(target_dir, name), "wb") as f:
            f.write(data)
        answer = json.dumps({"success": True}).encode("utf-8")
        conn.sendall(frame({
            "byteorder": sys.byteorder,
            "content-type": "text/json",
            "content-encoding": "utf-8",
            "content-length": len(answer),
        }) + answer)
        print("RECEIVED %s %d" % (name, len(data)), flush=True)
    except Exception as e:  # the original drops the connection without an answer
        print("DROPPED %s %s" % (name, str(e).replace("\n", " ")), flush=True)
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--count", type=int, default=0, help="exit after this many connections (0: never)")
    args = ap.parse_args()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((args.host, args.port))
    srv.listen(16)
    print("LISTENING %d" % srv.getsockname()[1], flush=True)
    served = 0
    while args.count == 0 or served < args.count:
        conn, _ = srv.accept()
        handle(conn, args.dir)
        served += 1
    srv.close()


if __name__ == "__main__":
    main()
