#!/usr/bin/env python3
"""A TCP proxy that records the Kafka request frames clients send, for the pre-check's corpus.

    record_proxy.py LISTEN_PORT BROKER_PORT OUT_DIR LABEL

Listens on 127.0.0.1:LISTEN_PORT, forwards every connection to 127.0.0.1:BROKER_PORT (point the
broker's advertised listener at LISTEN_PORT so that clients come back through the proxy), and
writes each client-to-broker frame, without its 4-byte size prefix, to
OUT_DIR/LABEL-<api key>-v<version>-<sha256 prefix>.bin. At most FRAMES_PER_API_VERSION distinct
frames are kept per label, API key and version, and none over FRAME_BYTES_MAX, so that the
corpus stays small. Runs until killed. Used by capture_corpus.sh.
"""

import asyncio
import collections
import hashlib
import os
import struct
import sys

FRAMES_PER_API_VERSION = 3
FRAME_BYTES_MAX = 64 * 1024

listen_port, broker_port, out_dir, label = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
kept = collections.Counter()


def record(frame):
    if len(frame) < 8 or len(frame) > FRAME_BYTES_MAX:
        return
    api_key, version = struct.unpack(">hh", frame[:4])
    # The correlation id differs between otherwise equal frames; leave it out of the name.
    digest = hashlib.sha256(frame[:4] + frame[8:]).hexdigest()[:12]
    path = os.path.join(out_dir, f"{label}-{api_key:02d}-v{version}-{digest}.bin")
    if os.path.exists(path) or kept[(api_key, version)] >= FRAMES_PER_API_VERSION:
        return
    kept[(api_key, version)] += 1
    with open(path, "wb") as file:
        file.write(frame)


async def client_to_broker(reader, writer):
    while True:
        size_bytes = await reader.readexactly(4)
        (size,) = struct.unpack(">i", size_bytes)
        frame = await reader.readexactly(size)
        record(frame)
        writer.write(size_bytes + frame)
        await writer.drain()


async def broker_to_client(reader, writer):
    while True:
        data = await reader.read(65536)
        if not data:
            return
        writer.write(data)
        await writer.drain()


async def serve(client_reader, client_writer):
    broker_reader, broker_writer = await asyncio.open_connection("127.0.0.1", broker_port)
    tasks = [
        asyncio.ensure_future(client_to_broker(client_reader, broker_writer)),
        asyncio.ensure_future(broker_to_client(broker_reader, client_writer)),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        broker_writer.close()
        client_writer.close()


async def main():
    os.makedirs(out_dir, exist_ok=True)
    server = await asyncio.start_server(serve, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


asyncio.run(main())
