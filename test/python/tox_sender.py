#!/usr/bin/env python3
"""Test peer: a sender that behaves like the original TouchDesigner "Threaded TCP
Transfer" TOX (written from its protocol description, standard library only).

One connection per file, in order: 2-byte big-endian header length, the JSON header
{"byteorder", "content-type": "file", "content-encoding": "base64", "file_name",
"content-length"}, then the whole file as MIME base64 (read into memory, like the
original). Then it waits for the answer and only then sends the next file.
The original calls base64.encodestring (gone since Python 3.9); this uses encodebytes.

Usage: tox_sender.py --host H --port P [--timeout S] FILE[=TARGET_NAME] ...
TARGET_NAME defaults to the base name. Prints one line per file:
"OK <name>" or "FAIL <name> <reason>". Exits 1 if any answer is missing or false.
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
        chunk = conn.recv(n - got)
        if not chunk:
            raise EOFError("connection closed without an answer (%d of %d bytes)" % (got, n))
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def send_one(host, port, path, name, timeout):
    with open(path, "rb") as f:
        payload = base64.encodebytes(f.read())
    header = json.dumps({
        "byteorder": sys.byteorder,
        "content-type": "file",
        "content-encoding": "base64",
        "file_name": name,
        "content-length": len(payload),
    }).encode("utf-8")
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(struct.pack(">H", len(header)) + header + payload)
        (n,) = struct.unpack(">H", recv_exact(conn, 2))
        answer_header = json.loads(recv_exact(conn, n).decode("utf-8"))
        answer = json.loads(recv_exact(conn, answer_header["content-length"]).decode("utf-8"))
    if answer.get("success") is not True:
        raise RuntimeError("answer %s" % json.dumps(answer))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    failed = 0
    for spec in args.files:
        path, sep, name = spec.partition("=")
        if not sep:
            name = os.path.basename(path)
        try:
            send_one(args.host, args.port, path, name, args.timeout)
            print("OK %s" % name, flush=True)
        except Exception as e:
            failed += 1
            print("FAIL %s %s" % (name, str(e).replace("\n", " ")), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
