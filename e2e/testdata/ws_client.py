"""A websockets client for warden's e2e tests (websockets 10.x, legacy asyncio
API, as in Debian's python3-websockets). Never compresses; no size limit.

  ws_client.py URL [--user U --password P] SCENARIO...

Scenarios run in order on one connection, then the connection is closed:

  text        a text message with non-ASCII letters, echoed back
  big         a 16 MiB random binary message, echoed back whole
              (--big-bytes N changes the size): lengths and sha256 of both
  fragments   a text message sent as an iterable of fragments, one frame
              each, received back whole
  pings       a binary message sent as an async iterable of fragments with
              a ping (and its pong awaited) between every two fragments
  hold        JSON lines instead of one object: "open", then an "echo"
              every --tick seconds, until a line "close" (or EOF) on stdin
              asks for a clean close, or the connection ends; then "closed"

Without hold, prints one JSON object:

  {"connected": true, "status": 101, "results": {SCENARIO: {...}},
   "close": {"seconds": S, "code": C, "reason": R}}
  {"connected": false, "status": 401, "headers": {...}}   handshake refused

Exit status 0 when a handshake happened, accepted or refused; 2 when
something else failed, with {"error": ...} on stdout.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import os
import sys
import time

import websockets

OPEN_TIMEOUT = 5
# Far above what a clean close should take through warden (well under a
# second), so that a close that waits for it is plain to see, and below the
# test's own limits.
CLOSE_TIMEOUT = 5
RECV_TIMEOUT = 30

START = time.monotonic()


def now():
    return round(time.monotonic() - START, 4)


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def sha(b):
    return hashlib.sha256(b).hexdigest()


async def recv(ws):
    return await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)


async def scenario_text(ws, args):
    sent = "héllo wörld ✓ through warden"
    await ws.send(sent)
    got = await recv(ws)
    return {"ok": got == sent, "sent": sent, "received": got if isinstance(got, str) else repr(got)}


async def scenario_big(ws, args):
    data = os.urandom(args.big_bytes)
    t0 = time.monotonic()
    await ws.send(data)
    got = await recv(ws)
    elapsed = time.monotonic() - t0
    return {
        "ok": isinstance(got, bytes) and got == data,
        "sent_bytes": len(data),
        "sent_sha256": sha(data),
        "received_bytes": len(got),
        "received_sha256": sha(got if isinstance(got, bytes) else got.encode()),
        "received_type": "binary" if isinstance(got, bytes) else "text",
        "seconds": round(elapsed, 3),
    }


async def scenario_fragments(ws, args):
    fragments = ["frag-%02d:" % i + "ü" * i for i in range(8)]
    await ws.send(fragments)  # an iterable: one frame per item
    got = await recv(ws)
    whole = "".join(fragments)
    return {"ok": got == whole, "fragments": len(fragments),
            "sent_chars": len(whole), "received_chars": len(got)}


async def scenario_pings(ws, args):
    fragments = [bytes([i]) * (1000 + i) for i in range(6)]
    pongs = []

    async def interleaved():
        for i, f in enumerate(fragments):
            if i > 0:
                waiter = await ws.ping(b"between-%d" % i)
                # The pong comes back while the message is half sent: the
                # tunnel carries control frames between data frames.
                pongs.append(await asyncio.wait_for(waiter, RECV_TIMEOUT))
            yield f

    await ws.send(interleaved())
    got = await recv(ws)
    whole = b"".join(fragments)
    return {"ok": got == whole, "fragments": len(fragments), "pings": len(fragments) - 1,
            "pongs": len(pongs), "sent_bytes": len(whole),
            "received_bytes": len(got), "received_sha256": sha(got) if isinstance(got, bytes) else None}


SCENARIOS = {
    "text": scenario_text,
    "big": scenario_big,
    "fragments": scenario_fragments,
    "pings": scenario_pings,
}


async def hold(ws, args):
    """JSON lines: open, echo..., closed. Stops on "close"/EOF on stdin."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    emit({"event": "open", "t": now()})
    close_asked = asyncio.Event()

    async def watch_stdin():
        while True:
            line = await reader.readline()
            if not line or line.strip() == b"close":
                close_asked.set()
                return

    async def ticker():
        n = 0
        while True:
            n += 1
            msg = "tick %d" % n
            try:
                await ws.send(msg)
                got = await recv(ws)
            except websockets.ConnectionClosed:
                return
            except asyncio.TimeoutError:
                emit({"event": "timeout", "n": n, "t": now()})
                return
            emit({"event": "echo", "n": n, "ok": got == msg, "t": now()})
            await asyncio.sleep(args.tick)

    stdin_task = asyncio.create_task(watch_stdin())
    tick_task = asyncio.create_task(ticker())
    closed_task = asyncio.create_task(ws.wait_closed())
    await asyncio.wait({stdin_task, closed_task}, return_when=asyncio.FIRST_COMPLETED,
                       timeout=args.hold_max)
    by = "peer"
    close_seconds = None
    if not closed_task.done():
        by = "client" if close_asked.is_set() else "hold_max"
        tick_task.cancel()
        t0 = time.monotonic()
        await ws.close()
        close_seconds = round(time.monotonic() - t0, 4)
    tick_task.cancel()
    stdin_task.cancel()
    emit({"event": "closed", "by": by, "code": ws.close_code, "reason": ws.close_reason,
          "close_seconds": close_seconds, "t": now()})


def headers_of(h):
    return {k.lower(): v for k, v in h.raw_items()}


async def run(args):
    extra = []
    if args.user is not None:
        cred = (args.user + ":" + (args.password or "")).encode("utf-8")
        extra.append(("Authorization", "Basic " + base64.b64encode(cred).decode("ascii")))
    try:
        ws = await websockets.connect(
            args.url, extra_headers=extra, compression=None, max_size=None,
            open_timeout=OPEN_TIMEOUT, close_timeout=CLOSE_TIMEOUT,
            ping_interval=None)
    except websockets.InvalidStatusCode as e:
        emit({"connected": False, "status": e.status_code, "headers": headers_of(e.headers)})
        return 0
    if args.scenarios == ["hold"]:
        await hold(ws, args)
        return 0
    out = {"connected": True, "status": 101,
           "extensions": [type(e).__name__ for e in ws.extensions], "results": {}}
    try:
        for name in args.scenarios:
            out["results"][name] = await SCENARIOS[name](ws, args)
    except Exception as e:  # report what was done so far
        out["error"] = "%s: %s" % (type(e).__name__, e)
    t0 = time.monotonic()
    await ws.close()
    out["close"] = {"seconds": round(time.monotonic() - t0, 4),
                    "code": ws.close_code, "reason": ws.close_reason}
    emit(out)
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("scenarios", nargs="*", choices=list(SCENARIOS) + ["hold"])
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--big-bytes", type=int, default=16 << 20)
    ap.add_argument("--tick", type=float, default=0.1)
    ap.add_argument("--hold-max", type=float, default=30)
    args = ap.parse_args()
    if "hold" in args.scenarios and len(args.scenarios) > 1:
        ap.error("hold runs alone")
    try:
        return asyncio.run(run(args))
    except Exception as e:
        emit({"error": "%s: %s" % (type(e).__name__, e)})
        return 2


if __name__ == "__main__":
    sys.exit(main())
