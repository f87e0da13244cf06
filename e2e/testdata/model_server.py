"""A small FastAPI app that behaves like a model server, for warden's e2e tests.

Run with: python3 -m uvicorn model_server:app --host 127.0.0.1 --port PORT

Endpoints:
  GET  /health               {"status": "ok"}
  POST /v1/completions       {"prompt", "max_tokens", "stream", "delay"}: JSON, or
                             one SSE event per token and "data: [DONE]"
  POST|PUT /v1/echo          reads the raw body: {"bytes", "sha256", "headers"}
  GET  /v1/stream-forever    an SSE event every 50 ms until the client goes away
  GET  /stats                what the streams saw, read directly by the tests
"""

import asyncio
import hashlib
import json
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

app = FastAPI()

# Module level: one uvicorn worker serves every request.
STATS = {
    "health_requests": 0,
    "forever_started": 0,
    "forever_active": 0,
    # Streams that ended because the client went away, by how it was seen:
    # "cancelled" when Starlette's disconnect listener cancelled the
    # generator, "is_disconnected" when the generator's own poll saw it first.
    "forever_disconnects": 0,
    "forever_disconnect_via": {},
    "forever_last_events": 0,
    "completions_streams_started": 0,
    "completions_streams_finished": 0,
    "completions_streams_cancelled": 0,
    # Requests that reached /v1/echo at all, and those read to the end.
    "echo_requests": 0,
    "echo_completed": 0,
}


def _count(via):
    STATS["forever_disconnects"] += 1
    STATS["forever_disconnect_via"][via] = STATS["forever_disconnect_via"].get(via, 0) + 1


@app.get("/health")
async def health():
    STATS["health_requests"] += 1
    return {"status": "ok"}


@app.get("/stats")
async def stats():
    return STATS


def _tokens(prompt, n):
    words = (prompt or "token").split() or ["token"]
    return [f"{words[i % len(words)]}-{i}" for i in range(n)]


@app.post("/v1/completions")
async def completions(request: Request):
    req = await request.json()
    prompt = str(req.get("prompt", ""))
    max_tokens = int(req.get("max_tokens", 16))
    delay = float(req.get("delay", 0.05))
    tokens = _tokens(prompt, max_tokens)
    if not req.get("stream", False):
        return {
            "object": "text_completion",
            "model": "e2e-model",
            "choices": [{"index": 0, "text": " ".join(tokens), "finish_reason": "length"}],
            "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(tokens)},
        }

    async def generate():
        STATS["completions_streams_started"] += 1
        try:
            for i, tok in enumerate(tokens):
                if i > 0:
                    await asyncio.sleep(delay)
                event = {
                    "index": i,
                    "text": tok,
                    "sent_unix_ms": int(time.time() * 1000),
                }
                yield f"data: {json.dumps(event)}\n\n"
            yield "data: [DONE]\n\n"
            STATS["completions_streams_finished"] += 1
        except asyncio.CancelledError:
            STATS["completions_streams_cancelled"] += 1
            raise

    return StreamingResponse(
        generate(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )


@app.api_route("/v1/echo", methods=["POST", "PUT"])
async def echo(request: Request):
    STATS["echo_requests"] += 1
    h = hashlib.sha256()
    n = 0
    async for chunk in request.stream():
        h.update(chunk)
        n += len(chunk)
    STATS["echo_completed"] += 1
    headers = {k.lower(): v for k, v in request.headers.items()}
    return JSONResponse({"bytes": n, "sha256": h.hexdigest(), "headers": headers})


@app.get("/v1/stream-forever")
async def stream_forever(request: Request):
    async def generate():
        STATS["forever_started"] += 1
        STATS["forever_active"] += 1
        i = 0
        try:
            while True:
                if await request.is_disconnected():
                    _count("is_disconnected")
                    return
                yield f"data: {json.dumps({'index': i})}\n\n"
                i += 1
                STATS["forever_last_events"] = i
                await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            _count("cancelled")
            raise
        finally:
            STATS["forever_active"] -= 1

    return StreamingResponse(
        generate(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )
