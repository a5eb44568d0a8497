"""idstitch: identity resolution and user attributes for product analytics."""

__version__ = "0.1.0"

from idstitch.client import ApiError, Client, ClientError  # noqa: E402 - after __version__, which the client does not need

__all__ = ["ApiError", "Client", "ClientError", "__version__"]
