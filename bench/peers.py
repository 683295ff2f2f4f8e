"""The bare peers the services are measured against, served exactly like the services.

* ``post``: a FastAPI POST whose body is the shared pydantic ``EventRequest``; no auth, no Redis.
* ``get``: a FastAPI GET that makes one Redis call (EVALSHA of a small read script, through the same
  redis.asyncio client settings the services use) and returns a small JSON.

Both run on uvicorn with uvloop and httptools, one worker, no access log: the services' settings.

    python bench/peers.py post --port 9000
    python bench/peers.py get --port 9001 --redis-url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "event-queue")]

import redis.asyncio as aioredis  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from event_queue.requests import EventRequest  # noqa: E402

# One small read, as a script (as the services' reads are): the length of a list.
READ = "return redis.call('LLEN', KEYS[1])"


def post_app() -> FastAPI:
    app = FastAPI()

    @app.post("/events", status_code=202)
    async def events(body: EventRequest) -> dict[str, Any]:
        return {"status": "queued", "event_id": "0", "times_queued": 1,
                "dedup_key": f"{body.account_id}:{body.exec_command.value}"}

    return app


def get_app(redis_url: str) -> FastAPI:
    app = FastAPI()
    client = aioredis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=2.0)
    script = client.register_script(READ)

    @app.get("/status")
    async def status() -> dict[str, Any]:
        return {"status": "pass", "queue_length": int(await script(keys=["bench:peer"]))}

    return app


def serve(app: FastAPI, port: int) -> None:
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                lifespan="on", log_config=None, access_log=False, server_header=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("post", "get"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    serve(post_app() if args.kind == "post" else get_app(args.redis_url), args.port)


if __name__ == "__main__":
    main()
