"""The AWS emulator: moto's server, in this process, on localhost.

Handlers reach it through the standard `AWS_ENDPOINT_URL` variable, so no code in `functions/`
knows it is running locally.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

REGION = "us-east-1"
# moto's default account; every ARN the emulator hands out carries it.
ACCOUNT = "123456789012"
# Any credentials do for moto; these make it obvious in a log where a request came from.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


Middleware = Callable[[Any], Any]


class _MotoServer(ThreadedMotoServer):
    """ThreadedMotoServer that reports a failed bind instead of waiting for it forever, and
    can wrap moto's WSGI application in a middleware (the local stack's fault injection).

    Its `start()` waits for an event the server thread sets only once it listens; when the
    port is taken the thread dies first, so the error is recorded and the wait released.
    """

    error: OSError | None = None
    middleware: Middleware | None = None

    def _server_entry(self) -> None:
        # ThreadedMotoServer._server_entry, with the application wrapped.
        try:
            app: Any = DomainDispatcherApplication(create_backend_app)
            if self.middleware is not None:
                app = self.middleware(app)
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()
        except (OSError, SystemExit) as error:
            # werkzeug prints "Address already in use" and calls sys.exit(1) on a taken port.
            self.error = error if isinstance(error, OSError) else OSError("address in use")
            self._server_ready_event.set()


class Emulator:
    def __init__(self, host: str, port: int, middleware: Middleware | None = None) -> None:
        self._server = _MotoServer(ip_address=host, port=port, verbose=False)
        self._server.middleware = middleware
        self.endpoint_url = ""

    def start(self) -> str:
        """Start listening; raises OSError when the port cannot be bound."""
        # werkzeug logs every request at INFO; the gateway and delivery logs say what matters.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server.start()
        if self._server.error is not None:
            raise self._server.error
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        return self.endpoint_url

    def stop(self) -> None:
        self._server.stop()


def point_sdk_at(endpoint_url: str, region: str = REGION) -> None:
    """Make every boto3 client in this process (handlers included) use the emulator."""
    os.environ.update(CREDENTIALS)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    os.environ["AWS_REGION"] = region
    os.environ["AWS_DEFAULT_REGION"] = region
    os.environ["AWS_ENDPOINT_URL"] = endpoint_url
    # No instance metadata lookups while resolving credentials on a laptop.
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
