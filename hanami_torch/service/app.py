"""The aiohttp application: routes from :data:`~.routes.ROUTES`, the error middleware, the
OpenAPI document, and the start/stop of the :class:`~.core.Service`."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

from . import openapi
from .api import METRICS_KEY, OPENAPI_KEY, SERVICE_KEY, errors_middleware, make_handler
from .clusters import close_sockets
from .config import Config
from .core import Service
from .metrics import Metrics
from .routes import ROUTES

log = logging.getLogger("hanami_torch.service")


def create_app(config: Config, service: Service | None = None) -> web.Application:
    """The application for ``config`` (a ready ``service`` may be passed in, e.g. by tests).
    The service is closed when the application shuts down."""
    service = service or Service(config)
    app = web.Application(middlewares=[errors_middleware], client_max_size=config.max_body_bytes)
    app[SERVICE_KEY] = service
    app[METRICS_KEY] = Metrics()
    app[OPENAPI_KEY] = openapi.document(ROUTES)
    for route in ROUTES:
        app.router.add_route(route.method, route.path, make_handler(route))
    app.cleanup_ctx.append(_lifetime)
    return app


async def _lifetime(app: web.Application):
    service = app[SERVICE_KEY]
    saver = asyncio.create_task(_save_periodically(service))
    yield
    saver.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await saver
    # close the sockets first, so that the pools can finish
    for live in service.registry.all():
        await close_sockets(live, 1001, b"the server is shutting down", wait=True)
    await asyncio.get_running_loop().run_in_executor(None, service.close)


async def _save_periodically(service: Service) -> None:
    """Networks trained over direct IO are written to disk every ``save_interval_s``."""
    while True:
        await asyncio.sleep(service.config.save_interval_s)
        try:
            await service.off_loop(service.registry.save_dirty)
        except Exception:  # keep saving later; a failure is logged, not fatal
            log.exception("saving clusters failed")
            service.log_error("saving clusters changed by direct IO failed")


def serve(config: Config) -> None:
    """Runs the server until interrupted (``hanami-torch serve``)."""
    config.check_bind(secret_configured=config.secret_file is not None)
    app = create_app(config)
    print(f"hanami_torch service on http://{config.host}:{config.port} (home {config.home}); "
          "API description at /openapi.json", flush=True)
    web.run_app(app, host=config.host, port=config.port, print=None, access_log=None, handle_signals=True)
