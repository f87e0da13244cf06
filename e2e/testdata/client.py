"""A Python requests client for warden's e2e tests. Prints one JSON object.

  client.py status URL [--user U --password P] [--auth str|utf8]
  client.py stream URL --user U --password P [--json BODY] [--max-events N]
  client.py upload URL --user U --password P --bytes N [--chunked]

--auth says how the credentials reach requests: "str" passes the password as
a str, which requests 2.x encodes as Latin-1 (see requests.auth._basic_auth_str);
"utf8" passes it as UTF-8 bytes, which requests sends as they are.

Exit status 0 whenever an HTTP exchange happened (whatever its status code);
2 when the request itself failed, with {"error": ...} on stdout.
"""

import argparse
import hashlib
import json
import sys
import time

import requests

CONNECT_TIMEOUT = 5
READ_TIMEOUT = 30


def session():
    s = requests.Session()
    # No proxies from the environment, and no credentials from ~/.netrc:
    # the test says exactly what is sent.
    s.trust_env = False
    return s


def auth_of(args):
    if args.user is None:
        return None
    password = args.password or ""
    if args.auth == "utf8":
        return (args.user.encode("utf-8"), password.encode("utf-8"))
    return (args.user, password)


def cmd_status(args):
    with session() as s:
        resp = s.request(args.method, args.url, auth=auth_of(args),
                         timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
        sent = resp.request.headers.get("Authorization")
        out = {
            "status": resp.status_code,
            "headers": {k.lower(): v for k, v in resp.headers.items()},
            "body": resp.text[:2000],
            # What requests put on the wire, so a test can explain a 401.
            "sent_authorization": sent,
        }
    print(json.dumps(out))


def cmd_stream(args):
    events = []
    done = False
    start = time.monotonic()
    with session() as s:
        # POST the JSON body if there is one, else GET.
        if args.json is not None:
            resp = s.post(args.url, json=json.loads(args.json), auth=auth_of(args),
                          stream=True, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
        else:
            resp = s.get(args.url, auth=auth_of(args), stream=True,
                         timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
        headers_at = time.monotonic() - start
        try:
            if resp.status_code == 200:
                for line in resp.iter_lines(chunk_size=args.chunk_size):
                    if not line.startswith(b"data: "):
                        continue
                    data = line[len(b"data: "):].decode("utf-8")
                    events.append({"t": time.monotonic() - start, "data": data})
                    if data == "[DONE]":
                        done = True
                        break
                    if args.max_events and len(events) >= args.max_events:
                        break
        finally:
            # For an unfinished response this closes the connection.
            resp.close()
    print(json.dumps({
        "status": resp.status_code,
        "headers": {k.lower(): v for k, v in resp.headers.items()},
        "headers_at": headers_at,
        "events": events,
        "done": done,
        "total": time.monotonic() - start,
    }))


def pattern_blocks(n, block=64 << 10):
    """n bytes of a fixed pattern, in blocks, never all held at once."""
    unit = bytes(range(251)) * ((block // 251) + 2)
    off = 0
    while off < n:
        m = min(block, n - off)
        start = off % 251
        yield unit[start:start + m]
        off += m


class SizedReader:
    """A file-like body of known length: requests sends Content-Length and
    http.client reads it block by block."""

    def __init__(self, n, hasher):
        self.n = n
        self.blocks = pattern_blocks(n)
        self.pending = b""
        self.hasher = hasher

    def __len__(self):
        return self.n

    def read(self, size=-1):
        while size < 0 or len(self.pending) < size:
            b = next(self.blocks, None)
            if b is None:
                break
            self.pending += b
        if size < 0:
            size = len(self.pending)
        out, self.pending = self.pending[:size], self.pending[size:]
        self.hasher.update(out)
        return out


def cmd_upload(args):
    sent = hashlib.sha256()
    if args.chunked:
        def gen():
            for b in pattern_blocks(args.bytes):
                sent.update(b)
                yield b
        data = gen()  # a generator: requests sends Transfer-Encoding: chunked
    else:
        data = SizedReader(args.bytes, sent)
    start = time.monotonic()
    with session() as s:
        resp = s.post(args.url, data=data, auth=auth_of(args),
                      headers={"Content-Type": "application/octet-stream"},
                      timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
        try:
            reply = resp.json()
        except ValueError:
            reply = None
        print(json.dumps({
            "status": resp.status_code,
            "reply": reply,
            "body": None if reply is not None else resp.text[:2000],
            "sent_sha256": sent.hexdigest(),
            "request_headers": {k.lower(): v for k, v in resp.request.headers.items()
                                if k.lower() != "authorization"},
            "seconds": time.monotonic() - start,
        }))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp):
        sp.add_argument("url")
        sp.add_argument("--user")
        sp.add_argument("--password")
        sp.add_argument("--auth", choices=["str", "utf8"], default="str")

    sp = sub.add_parser("status")
    common(sp)
    sp.add_argument("--method", default="GET")
    sp.set_defaults(fn=cmd_status)

    sp = sub.add_parser("stream")
    common(sp)
    sp.add_argument("--json", help="POST this JSON body; without it, GET")
    sp.add_argument("--max-events", type=int, default=0)
    sp.add_argument("--chunk-size", type=int, default=512,
                    help="passed to iter_lines; 512 is requests' default")
    sp.set_defaults(fn=cmd_stream)

    sp = sub.add_parser("upload")
    common(sp)
    sp.add_argument("--bytes", type=int, required=True)
    sp.add_argument("--chunked", action="store_true")
    sp.set_defaults(fn=cmd_upload)

    args = p.parse_args()
    try:
        args.fn(args)
    except requests.RequestException as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
