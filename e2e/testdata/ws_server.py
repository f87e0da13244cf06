"""A websockets echo server for warden's e2e tests (websockets 10.x, legacy
asyncio API, as in Debian's python3-websockets).

  ws_server.py [--host 127.0.0.1] [--port 0] [--compression none|deflate]

Echoes every text and binary message whole, with no size limit.

It tells the test what it sees by printing one JSON object per line on
stdout, each with an "event" and "t" (seconds since start):

  listening        {"port": N}                 once, when it accepts connections
  tcp_open         {"conn": id}                a TCP connection was accepted
  connection       {"conn": id}                that connection sent its first bytes
                                               (warden's readiness probes send none)
  request          {"conn", "path", "headers"} an HTTP request for a handshake was read
  rejected         {"conn", "path", "status"}  process_request refused it
  handshake        {"conn", "path", "extensions"}   a handshake was accepted (101)
  message          {"conn", "type", "bytes", "frames", "pings_during"}
                   a data message arrived: in how many frames, with how many
                   pings received between its first and last frame
  closed           {"conn", "code", "reason"}  the handler ended
  connection_lost  {"conn"}                    the TCP connection ended

Paths: /reject answers 403 through process_request (a real HTTP response,
no 101); /reject/<status> answers that status. Any other path is an echo.
"""

import argparse
import asyncio
import http
import json
import logging
import sys
import time

import websockets
from websockets.legacy.protocol import OP_BINARY, OP_CONT, OP_PING, OP_TEXT
from websockets.legacy.server import WebSocketServerProtocol

START = time.monotonic()


def emit(event, **fields):
    fields = {"event": event, "t": round(time.monotonic() - START, 4), **fields}
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


class Protocol(WebSocketServerProtocol):
    """Numbers its connections and reports what crosses them."""

    next_id = 0

    def connection_made(self, transport):
        Protocol.next_id += 1
        self.conn_id = Protocol.next_id
        self.spoke = False
        # Frames of the data message being received.
        self.msg_frames = 0
        self.msg_pings = 0
        self.in_message = False
        emit("tcp_open", conn=self.conn_id)
        super().connection_made(transport)

    def data_received(self, data):
        if not self.spoke:
            self.spoke = True
            emit("connection", conn=self.conn_id)
        super().data_received(data)

    def connection_lost(self, exc):
        emit("connection_lost", conn=self.conn_id)
        super().connection_lost(exc)

    async def process_request(self, path, request_headers):
        emit("request", conn=self.conn_id, path=path,
             headers=[[k, v] for k, v in request_headers.raw_items()])
        if path == "/reject" or path.startswith("/reject/"):
            status = http.HTTPStatus.FORBIDDEN
            rest = path[len("/reject/"):]
            if rest.isdigit():
                status = http.HTTPStatus(int(rest))
            emit("rejected", conn=self.conn_id, path=path, status=status.value)
            return (status, [("Content-Type", "text/plain"), ("X-Refused-By", "ws_server")],
                    b"refused by ws_server\n")
        return None

    async def read_frame(self, max_size):
        frame = await super().read_frame(max_size)
        if frame.opcode in (OP_TEXT, OP_BINARY, OP_CONT):
            if frame.opcode != OP_CONT:
                self.msg_type = "text" if frame.opcode == OP_TEXT else "binary"
                self.msg_frames = 0
                self.msg_pings = 0
                self.msg_bytes = 0
            self.msg_frames += 1
            self.msg_bytes += len(frame.data)
            self.in_message = not frame.fin
            if frame.fin:
                emit("message", conn=self.conn_id, type=self.msg_type, bytes=self.msg_bytes,
                     frames=self.msg_frames, pings_during=self.msg_pings)
        elif frame.opcode == OP_PING and self.in_message:
            self.msg_pings += 1
        return frame


async def echo(ws):
    emit("handshake", conn=ws.conn_id, path=ws.path,
         extensions=[type(e).__name__ for e in ws.extensions])
    try:
        async for message in ws:
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass
    emit("closed", conn=ws.conn_id, code=ws.close_code, reason=ws.close_reason)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--compression", choices=["none", "deflate"], default="none")
    args = ap.parse_args()

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="ws_server %(levelname)s %(name)s: %(message)s")
    compression = None if args.compression == "none" else "deflate"
    async with websockets.serve(echo, args.host, args.port, create_protocol=Protocol,
                                max_size=None, compression=compression) as server:
        port = server.sockets[0].getsockname()[1]
        emit("listening", port=port, compression=args.compression)
        await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
