"""ASGI lifespan: lets a server's shutdown wait for the recorders.

uvicorn ends a SIGTERM'd process by re-raising the signal once it has shut
down, so atexit handlers never run there. The lifespan "shutdown" event comes
after every socket has closed (each device consumer has called recorder.close())
and before the process ends: the moment to let the writers make their open
segments durable. Run uvicorn with `--lifespan on` (scripts/run, Dockerfile,
docs/deployment.md).
"""
import asyncio
import logging

log = logging.getLogger(__name__)


async def lifespan_app(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                from recordings.recorder import close_all_recorders

                closed = await asyncio.to_thread(close_all_recorders)
                if closed:
                    log.info("closed %d recorders durably at shutdown", closed)
            except Exception:  # never block the shutdown itself
                log.exception("closing recorders at shutdown failed")
            await send({"type": "lifespan.shutdown.complete"})
            return
