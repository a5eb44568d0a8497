"""idstitch: identity resolution and user attributes for product analytics."""

__version__ = "0.1.0"
