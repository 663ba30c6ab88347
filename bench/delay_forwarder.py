#!/usr/bin/env python3
"""A TCP forwarder that delays every chunk by a fixed time in each direction.

    delay_forwarder.py --target 127.0.0.1:PORT --delay-ms 20

It listens on 127.0.0.1 (a free port, printed as `delay-forwarder listening on HOST:PORT`)
and connects each accepted connection to the target. Every chunk read on one side is
written to the other side `delay` after it was read, in order; connections do not wait
for each other (one reader and one writer task per direction and connection). At most
WINDOW bytes are in flight per direction, so a fast sender is slowed by TCP flow control
as it would be by a real link's bandwidth-delay product, instead of filling memory.
"""

import argparse
import asyncio
import time

CHUNK = 256 * 1024
WINDOW = 16 * 1024 * 1024


async def pump(reader, writer, delay):
    queue = asyncio.Queue()
    budget = asyncio.Semaphore(WINDOW // CHUNK)

    async def read_side():
        try:
            while True:
                await budget.acquire()
                data = await reader.read(CHUNK)
                queue.put_nowait((time.monotonic() + delay, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            queue.put_nowait((time.monotonic() + delay, b""))

    async def write_side():
        try:
            while True:
                due, data = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
                budget.release()
        except (ConnectionError, OSError):
            pass

    await asyncio.gather(read_side(), write_side())


async def handle(client_reader, client_writer, target, delay):
    host, port = target
    try:
        up_reader, up_writer = await asyncio.open_connection(host, port)
    except OSError:
        client_writer.close()
        return
    try:
        await asyncio.gather(pump(client_reader, up_writer, delay), pump(up_reader, client_writer, delay))
    finally:
        for w in (client_writer, up_writer):
            w.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True, help="HOST:PORT to forward to")
    ap.add_argument("--delay-ms", type=float, default=20.0)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    host, _, port = args.target.rpartition(":")
    target, delay = (host, int(port)), args.delay_ms / 1000
    server = await asyncio.start_server(lambda r, w: handle(r, w, target, delay), "127.0.0.1", args.port,
                                        backlog=4096)
    addr = server.sockets[0].getsockname()
    print(f"delay-forwarder listening on {addr[0]}:{addr[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
