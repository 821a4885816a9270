#!/usr/bin/env python3
"""The docker CLI's own share of a `docker run`: the CLI against a stand-in daemon that answers
every request of `docker run --rm` and `docker run -d` at once, with canned replies of the
shapes the CLI reads (API 1.50), and no container. Whatever time such a run takes is the
CLI's: no daemon can make `docker run` faster than this, so it bounds the ratio any daemon can
reach against dockerd.

    perf/cli-floor.py [RUNS]        # docker CLI at $DOCKER (default /usr/local/bin/docker)

Prints the median (and quartiles) of RUNS timed runs of each command, each timed run following
an untimed one, as perf/daemon.sh times berthd and dockerd. Needs nothing but python3.
"""

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

DOCKER = os.environ.get("DOCKER", "/usr/local/bin/docker")
CID = "f" * 64
HEADERS = "Api-Version: 1.50\r\nDocker-Experimental: false\r\nOstype: linux\r\nServer: stand-in\r\n"


class Stand:
    """One 'container' per create: its attach stream and `wait` replies are released by start."""

    def __init__(self):
        self.started = asyncio.Event()


async def read_request(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    length = 0
    for line in lines[1:]:
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    if length:
        await reader.readexactly(length)
    return method, target.split("?", 1)[0], target


def reply(status, body=None, extra=""):
    data = b"" if body is None else json.dumps(body).encode()
    kind = "Content-Type: application/json\r\n" if body is not None else ""
    return (
        f"HTTP/1.1 {status}\r\n{HEADERS}{kind}{extra}Content-Length: {len(data)}\r\n\r\n".encode()
        + data
    )


async def serve(reader, writer, state):
    try:
        while True:
            try:
                method, path, target = await read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if path.endswith("/_ping"):
                body = b"" if method == "HEAD" else b"OK"
                writer.write(
                    f"HTTP/1.1 200 OK\r\n{HEADERS}Cache-Control: no-cache\r\n"
                    f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\n\r\n".encode()
                    + body
                )
            elif path.endswith("/containers/create"):
                state["c"] = Stand()
                writer.write(reply("201 Created", {"Id": CID, "Warnings": []}))
            elif path.endswith("/attach"):
                writer.write(
                    f"HTTP/1.1 101 UPGRADED\r\n{HEADERS}Content-Type: application/vnd.docker.multiplexed-stream\r\n"
                    "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n".encode()
                )
                await writer.drain()
                await state["c"].started.wait()
                writer.close()
                return
            elif path.endswith("/wait"):
                c = state["c"]
                writer.write(
                    f"HTTP/1.1 200 OK\r\n{HEADERS}Content-Type: application/json\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n".encode()
                )
                await writer.drain()
                await c.started.wait()
                body = json.dumps({"Error": None, "StatusCode": 0}).encode() + b"\n"
                writer.write(f"{len(body):X}\r\n".encode() + body + b"\r\n0\r\n\r\n")
            elif path.endswith("/version"):
                writer.write(reply("200 OK", {
                    "Version": "stand-in", "ApiVersion": "1.50", "MinAPIVersion": "1.24",
                    "Os": "linux", "Arch": "amd64", "KernelVersion": os.uname().release,
                    "Components": [{"Name": "Engine", "Version": "stand-in", "Details": {}}],
                }))
            elif path.endswith("/start"):
                writer.write(reply("204 No Content"))
                await writer.drain()
                state["c"].started.set()
            else:
                writer.write(reply("404 Not Found", {"message": f"stand-in: {method} {target}"}))
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def timed(sock, args):
    t = time.perf_counter()
    subprocess.run([DOCKER, "-H", f"unix://{sock}", *args], stdout=subprocess.DEVNULL, check=True)
    return (time.perf_counter() - t) * 1000


async def main(runs):
    state = {}
    with tempfile.TemporaryDirectory() as d:
        sock = os.path.join(d, "stand-in.sock")
        server = await asyncio.start_unix_server(lambda r, w: serve(r, w, state), path=sock)
        loop = asyncio.get_running_loop()
        cmds = {
            "run --rm busybox true": ["run", "--rm", "--network", "none", "busybox", "true"],
            "run -d busybox sleep": ["run", "-d", "--network", "none", "busybox", "sleep", "1"],
            "version": ["version"],
        }
        for name, args in cmds.items():
            ms = []
            for _ in range(runs):
                await loop.run_in_executor(None, timed, sock, args)
                ms.append(await loop.run_in_executor(None, timed, sock, args))
            q = statistics.quantiles(ms, n=4)
            print(f"  docker {name:24} {statistics.median(ms):5.1f} ms (quartiles {q[0]:.1f}-{q[2]:.1f})")
        server.close()


if __name__ == "__main__":
    print(f"== the docker CLI against a stand-in daemon that answers at once ({DOCKER})")
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 30))
