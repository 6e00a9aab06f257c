"""The AWS emulator: moto's server, in this process, on localhost.

Handlers reach it through the standard `AWS_ENDPOINT_URL` variable, so no code in `functions/`
knows it is running locally.
"""

from __future__ import annotations

import logging
import os
import time
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


def _speed_up_moto() -> None:
    """moto's per-request costs that grow with load, removed without changing answers.

    - Every request lists moto's package directory (under a global lock) to match the host
      against backend names: the list never changes, so it is computed once.
    - Every request lists the methods of its service's response class (inspect.getmembers,
      a few hundred attributes) to check that the action exists: the classes never change,
      so each list is computed once.
    - Every received SQS message computes all of its queue's attributes, counting the queue's
      messages, only to read the retention period: a receive from a deep queue (a burst of
      notifications) became quadratic. The retention period is read directly.
    - SQS asks for the current time once per message whenever it counts a queue (each send
      does); moto builds two datetimes per call. The same number comes from time.time().
    - A Query on a global secondary index (the publish handler's lookup of a user's
      connections) sorted and tested every item of the table: each delivery cost time in
      proportion to the connections held. moto's Query now walks only the items under the
      queried hash-key value, from a map rebuilt after writes (`local.gsi_query_index`).

    And one race fixed: moto deletes an SQS message by rebuilding the queue's message list
    without the lock its sends append under, so a message sent at that moment (SNS fanning a
    notification into the subscription queue while the delivery deletes the previous one) was
    lost. The rebuild now holds that lock.
    """
    from moto import backends
    from moto.core import responses, utils
    from moto.sqs import models as sqs_models

    from local import gsi_query_index

    if getattr(backends, "_local_stack_patched", False):
        return
    gsi_query_index.install()
    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules  # type: ignore[assignment]

    method_names_by_class: dict[type, frozenset[str]] = {}

    def method_names_from_class(response_class: type) -> frozenset[str]:
        # Only tested for membership (`action in method_names`).
        names = method_names_by_class.get(response_class)
        if names is None:
            names = frozenset(utils.method_names_from_class(response_class))
            method_names_by_class[response_class] = names
        return names

    responses.method_names_from_class = method_names_from_class  # type: ignore[assignment]

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else utils.unix_time(dt)

    def unix_time_millis(dt: Any = None) -> float:
        return time.time() * 1000.0 if dt is None else utils.unix_time_millis(dt)

    sqs_models.unix_time = unix_time  # type: ignore[assignment]
    sqs_models.unix_time_millis = unix_time_millis  # type: ignore[assignment]

    def is_message_valid_based_on_retention_period(
        self: Any, queue_name: str, message: Any
    ) -> bool:
        retention = int(self.get_queue(queue_name).message_retention_period)
        return bool(retention + message.sent_timestamp / 1000 > time.time())

    SQSBackend = sqs_models.SQSBackend
    unlocked_delete = sqs_models.Queue.delete_message

    def delete_message(self: Any, receipt_handle: str) -> None:
        with self._messages_lock:
            unlocked_delete(self, receipt_handle)

    sqs_models.Queue.delete_message = delete_message  # type: ignore[method-assign]

    SQSBackend.is_message_valid_based_on_retention_period = (  # type: ignore[method-assign]
        is_message_valid_based_on_retention_period
    )
    backends._local_stack_patched = True  # type: ignore[attr-defined]


class Emulator:
    def __init__(self, host: str, port: int, middleware: Middleware | None = None) -> None:
        self._server = _MotoServer(ip_address=host, port=port, verbose=False)
        self._server.middleware = middleware
        self.endpoint_url = ""

    def start(self) -> str:
        """Start listening; raises OSError when the port cannot be bound."""
        # werkzeug logs every request at INFO; the gateway and delivery logs say what matters.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        _speed_up_moto()
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
