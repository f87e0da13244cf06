"""A FastAPI app that speaks the OpenAI and Anthropic APIs, for warden's
client end-to-end tests (e2e/clients_test.go): the official SDKs, LangChain,
Hugging Face's client, a browser, locust, vegeta and autocannon call it
through warden.

Run with: python3 llm_server.py --host 127.0.0.1 --port 0
It binds, prints {"event": "listening", "port": N} on stdout, then serves
with uvicorn (Debian's python3-uvicorn, python3-fastapi, python3-websockets).

Endpoints:
  GET  /health                 {"status": "ok"}
  GET  /v1/models              the OpenAI model list (one model, "e2e-model")
  POST /v1/chat/completions    OpenAI chat completions: JSON, or with
                               "stream": true chat.completion.chunk events and
                               "data: [DONE]" (a usage chunk first when
                               stream_options.include_usage)
  POST /v1/messages            Anthropic messages: JSON, or with "stream": true
                               message_start, content_block_start, ping,
                               content_block_delta..., content_block_stop,
                               message_delta, message_stop
  POST /pause, POST /sleep     stand-ins for a model server's admin endpoints
                               (vLLM's); they answer {"ok": true, "path": ...}
  GET  /ui                     a browser page (like a Gradio app) that calls
                               /v1/models and /v1/chat/completions with fetch,
                               /ui/events with EventSource and /ui/ws over a
                               websocket, and puts what it got in
                               window.results (and the page), then sets
                               window.done = true
  GET  /ui/events              SSE: "tick-0".."tick-2", 100 ms apart
  WS   /ui/ws                  echoes every text message
  GET  /stats                  what the server saw, read by the tests directly
  POST /stats/reset            forgets it

The reply to a chat or a message is the words of the last user message, as
tokens; "tokens" sets how many (the words repeat). Slowness, per request,
from the model name or from headers (headers win):

  model "e2e-model@prefill=10,interval=0.05,tokens=8,head=late,tag=abc"
  or headers x-test-prefill: 10, x-test-interval: 0.05, x-test-tokens: 8,
             x-test-head: late, x-test-tag: abc

  prefill   seconds before the first token (default 0)
  interval  seconds between tokens when streaming (default 0.01)
  tokens    number of tokens (default: the words of the last user message)
  head      "early" (default): a stream's response head is sent at once, and
            the prefill happens with the body silent, as vLLM does; "late":
            the head is sent with the first token, so a client (or warden)
            waits for the head through the prefill
  tag       a name the test finds the request by in /stats

/stats reports, per generation (chat or message), whether it completed or
was cancelled because the client went away, in which phase ("prefill" or
"generating"), and when (Unix time). Disconnects are noticed in every phase:
a stream through Starlette's disconnect listener, which cancels the
generator (during the prefill too, before its first byte); a non-streamed
answer and a late-head stream's prefill by running the work as a task and
watching `await request.receive()` for "http.disconnect", as vLLM's
with_cancellation does. It also reports, per request (the last 1000), the
raw path and the Authorization and x-api-key headers the server saw, so the
tests can prove warden stripped them, and counts per path.
"""

import argparse
import asyncio
import json
import socket
import sys
import time
import uuid
from collections import Counter, deque

import uvicorn
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

MODEL = "e2e-model"

# Module level: one uvicorn worker serves every request.
STATS = {}


def reset_stats():
    STATS.clear()
    STATS.update(
        {
            # Every request but /health and /stats: the last 1000.
            "requests": deque(maxlen=1000),
            "requests_total": 0,
            # By the path the app routed on (percent-decoded), and by the raw
            # path, as the bytes arrived.
            "paths": Counter(),
            "raw_paths": Counter(),
            # Chat completions and messages: the last 1000.
            "generations": deque(maxlen=1000),
        }
    )


reset_stats()

app = FastAPI()


class RecordRequests:
    """ASGI middleware: notes every HTTP request and websocket handshake
    before the app sees it."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket") and scope["path"] not in ("/health", "/stats", "/stats/reset"):
            raw = scope.get("raw_path") or scope["path"].encode()
            if isinstance(raw, bytes):
                raw = raw.decode("latin-1")
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            STATS["requests_total"] += 1
            STATS["paths"][scope["path"]] += 1
            STATS["raw_paths"][raw] += 1
            STATS["requests"].append(
                {
                    "n": STATS["requests_total"],
                    "type": scope["type"],
                    "method": scope.get("method", "GET"),
                    "path": scope["path"],
                    "raw_path": raw,
                    "query": scope.get("query_string", b"").decode("latin-1"),
                    "authorization": headers.get("authorization"),
                    "x_api_key": headers.get("x-api-key"),
                    "tag": headers.get("x-test-tag"),
                }
            )
        await self.inner(scope, receive, send)


@app.get("/health")
async def health():
    return {"status": "ok"}


@app.get("/stats")
async def stats():
    return {
        "requests": list(STATS["requests"]),
        "requests_total": STATS["requests_total"],
        "paths": STATS["paths"],
        "raw_paths": STATS["raw_paths"],
        "generations": list(STATS["generations"]),
    }


@app.post("/stats/reset")
async def stats_reset():
    reset_stats()
    return {"ok": True}


@app.post("/pause")
@app.post("/sleep")
async def admin(request: Request):
    return {"ok": True, "path": request.url.path}


@app.get("/v1/models")
async def models():
    return {
        "object": "list",
        "data": [{"id": MODEL, "object": "model", "created": 1700000000, "owned_by": "warden-e2e"}],
    }


# --- what a request asks for --------------------------------------------------


def controls(request, model):
    """The slowness a request asks for: the model name's @key=value list,
    overridden by x-test-* headers."""
    c = {"prefill": 0.0, "interval": 0.01, "tokens": None, "head": "early", "tag": None}
    name, _, params = (model or MODEL).partition("@")
    for pair in filter(None, params.split(",")):
        k, _, v = pair.partition("=")
        c[k.strip()] = v.strip()
    for k in list(c):
        v = request.headers.get("x-test-" + k)
        if v is not None:
            c[k] = v
    c["prefill"] = float(c["prefill"])
    c["interval"] = float(c["interval"])
    c["tokens"] = None if c["tokens"] is None else int(c["tokens"])
    c["model"] = name or MODEL
    return c


def text_of(content):
    """The text of a message's content: a string, or a list of blocks (both
    APIs allow either)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


def prompt_tokens_of(messages):
    """The prompt's length in tokens, counted as words."""
    return sum(len(text_of(m.get("content")).split()) for m in messages or [] if isinstance(m, dict))


def reply_tokens(messages, n):
    """The tokens of the reply: the words of the last user message, repeated
    up to n, each but the first with its leading space, so that they join
    into the reply text."""
    words = []
    for m in messages or []:
        if isinstance(m, dict) and m.get("role") == "user":
            words = text_of(m.get("content")).split()
    words = words or ["hello"]
    n = len(words) if n is None else n
    return [("" if i == 0 else " ") + words[i % len(words)] for i in range(n)]


def new_generation(request, api, stream, c):
    g = {
        "api": api,
        "stream": stream,
        "model": c["model"],
        "tag": c["tag"],
        "head": c["head"],
        "authorization": request.headers.get("authorization"),
        "x_api_key": request.headers.get("x-api-key"),
        "status": "running",
        "phase": "prefill",
        "tokens_sent": 0,
        "started_unix": time.time(),
        "ended_unix": None,
        # How the disconnect was seen: "receive" (watching the ASGI
        # receive channel) or "cancelled" (Starlette cancelled the stream).
        "seen_via": None,
    }
    STATS["generations"].append(g)
    return g


def end(g, status, via=None):
    if g["status"] == "running":
        g["status"] = status
        g["ended_unix"] = time.time()
        g["seen_via"] = via


async def wait_disconnect(request):
    """Returns when the client has gone: once the body is read, the next ASGI
    message is http.disconnect."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def with_cancellation(request, g, work):
    """Runs the coroutine work as a task, cancelled if the client goes away
    first (vLLM's with_cancellation). Returns (True, result), or (False, None)
    when the client went away."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(wait_disconnect(request))
    done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        watcher.cancel()
        return True, task.result()
    end(g, "cancelled", "receive")
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    return False, None


async def generate_all(g, c, tokens):
    """A non-streamed generation: the prefill, then every token."""
    await asyncio.sleep(c["prefill"])
    g["phase"] = "generating"
    for _ in tokens:
        g["tokens_sent"] += 1
        await asyncio.sleep(0)
    return "".join(tokens)


def sse_stream(g, c, tokens, events, prefilled):
    """A generator of SSE text: the prefill (unless done before the head was
    sent), then events(i, token) per token with the interval between,
    then events(None, None) for the ending events. Starlette cancels it when
    the client goes away."""

    async def gen():
        try:
            if not prefilled:
                await asyncio.sleep(c["prefill"])
            g["phase"] = "generating"
            for chunk in events("start", None):
                yield chunk
            for i, tok in enumerate(tokens):
                if i > 0:
                    await asyncio.sleep(c["interval"])
                for chunk in events(i, tok):
                    yield chunk
                g["tokens_sent"] += 1
            for chunk in events("end", None):
                yield chunk
            end(g, "completed")
        except asyncio.CancelledError:
            end(g, "cancelled", "cancelled")
            raise

    return gen()


async def stream_response(request, g, c, tokens, events):
    prefilled = False
    if c["head"] == "late" and c["prefill"] > 0:
        ok, _ = await with_cancellation(request, g, asyncio.sleep(c["prefill"]))
        if not ok:
            return JSONResponse({"error": "client went away"}, status_code=499)
        prefilled = True
    return StreamingResponse(
        sse_stream(g, c, tokens, events, prefilled),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )


def sse(data, event=None):
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n"


# --- OpenAI -------------------------------------------------------------------


@app.post("/v1/chat/completions")
async def chat_completions(request: Request):
    req = await request.json()
    c = controls(request, req.get("model"))
    stream = bool(req.get("stream", False))
    tokens = reply_tokens(req.get("messages"), c["tokens"])
    g = new_generation(request, "openai", stream, c)
    cid = "chatcmpl-" + uuid.uuid4().hex[:24]
    created = int(time.time())
    prompt_tokens = prompt_tokens_of(req.get("messages"))
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens), "total_tokens": prompt_tokens + len(tokens)}

    if not stream:
        ok, text = await with_cancellation(request, g, generate_all(g, c, tokens))
        if not ok:
            return JSONResponse({"error": "client went away"}, status_code=499)
        end(g, "completed")
        return {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": c["model"],
            "system_fingerprint": "fp_warden_e2e",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }

    include_usage = bool((req.get("stream_options") or {}).get("include_usage"))

    def chunk(delta, finish=None):
        return {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": c["model"],
            "system_fingerprint": "fp_warden_e2e",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    def events(i, tok):
        if i == "start":
            return [sse(chunk({"role": "assistant", "content": ""}))]
        if i == "end":
            out = [sse(chunk({}, "stop"))]
            if include_usage:
                u = chunk({})
                u["choices"] = []
                u["usage"] = usage
                out.append(sse(u))
            return out + ["data: [DONE]\n\n"]
        return [sse(chunk({"content": tok}))]

    return await stream_response(request, g, c, tokens, events)


# --- Anthropic ----------------------------------------------------------------


@app.post("/v1/messages")
async def messages(request: Request):
    req = await request.json()
    c = controls(request, req.get("model"))
    stream = bool(req.get("stream", False))
    tokens = reply_tokens(req.get("messages"), c["tokens"])
    g = new_generation(request, "anthropic", stream, c)
    mid = "msg_" + uuid.uuid4().hex[:24]
    input_tokens = prompt_tokens_of(req.get("messages"))

    if not stream:
        ok, text = await with_cancellation(request, g, generate_all(g, c, tokens))
        if not ok:
            return JSONResponse({"error": "client went away"}, status_code=499)
        end(g, "completed")
        return {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "model": c["model"],
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": len(tokens)},
        }

    def events(i, tok):
        if i == "start":
            message = {
                "id": mid,
                "type": "message",
                "role": "assistant",
                "model": c["model"],
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": 1},
            }
            return [
                sse({"type": "message_start", "message": message}, "message_start"),
                sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}, "content_block_start"),
                sse({"type": "ping"}, "ping"),
            ]
        if i == "end":
            return [
                sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
                sse(
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                        "usage": {"output_tokens": len(tokens)},
                    },
                    "message_delta",
                ),
                sse({"type": "message_stop"}, "message_stop"),
            ]
        return [sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": tok}}, "content_block_delta")]

    return await stream_response(request, g, c, tokens, events)


# --- the browser page ---------------------------------------------------------

UI = """<!doctype html>
<html><head><meta charset="utf-8"><title>e2e model UI</title></head>
<body>
<h1>e2e model UI</h1>
<pre id="results">running</pre>
<script>
window.results = {};
window.done = false;
function show() { document.getElementById("results").textContent = JSON.stringify(window.results, null, 1); }
async function viaFetch() {
  const models = await fetch("/v1/models");
  const list = await models.json();
  const chat = await fetch("/v1/chat/completions", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({model: "e2e-model", messages: [{role: "user", content: "hello from the browser"}]}),
  });
  const answer = await chat.json();
  return {models_status: models.status, models: list.data.map(m => m.id),
          chat_status: chat.status, content: answer.choices[0].message.content};
}
function viaEventSource() {
  return new Promise((resolve, reject) => {
    const got = [];
    const es = new EventSource("/ui/events");
    es.onmessage = e => { got.push(e.data); if (got.length === 3) { es.close(); resolve(got); } };
    es.onerror = () => { es.close(); reject(new Error("EventSource error after " + got.length + " events")); };
  });
}
function viaWebsocket() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ui/ws");
    ws.onopen = () => ws.send("echo through warden");
    ws.onmessage = e => { ws.close(); resolve(e.data); };
    ws.onerror = () => reject(new Error("websocket error"));
  });
}
async function step(name, f) {
  try { window.results[name] = {ok: true, value: await f()}; }
  catch (e) { window.results[name] = {ok: false, error: String(e)}; }
  show();
}
(async () => {
  await step("fetch", viaFetch);
  await step("eventsource", viaEventSource);
  await step("websocket", viaWebsocket);
  window.done = true;
  document.title = "done";
})();
</script>
</body></html>
"""


@app.get("/ui")
async def ui():
    return HTMLResponse(UI)


@app.get("/ui/events")
async def ui_events():
    async def gen():
        for i in range(3):
            if i > 0:
                await asyncio.sleep(0.1)
            yield f"data: tick-{i}\n\n"

    return StreamingResponse(gen(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@app.websocket("/ui/ws")
async def ui_ws(ws: WebSocket):
    await ws.accept()
    try:
        while True:
            await ws.send_text(await ws.receive_text())
    except WebSocketDisconnect:
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    # Bound here, port 0: the kernel picks a free port and nothing can take
    # it before uvicorn serves on it.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sys.stdout.write(json.dumps({"event": "listening", "port": sock.getsockname()[1]}) + "\n")
    sys.stdout.flush()
    config = uvicorn.Config(RecordRequests(app), log_level="warning", ws="websockets", lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
