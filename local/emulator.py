"""The AWS emulator: moto's server, in this process, on localhost.

Handlers reach it through the standard `AWS_ENDPOINT_URL` variable, so no code in `functions/`
knows it is running locally.
"""

from __future__ import annotations

import logging
import os

from moto.server import ThreadedMotoServer

REGION = "us-east-1"
# moto's default account; every ARN the emulator hands out carries it.
ACCOUNT = "123456789012"
# Any credentials do for moto; these make it obvious in a log where a request came from.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


class Emulator:
    def __init__(self, host: str, port: int) -> None:
        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self.endpoint_url = ""

    def start(self) -> str:
        # werkzeug logs every request at INFO; the gateway and delivery logs say what matters.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server.start()
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
