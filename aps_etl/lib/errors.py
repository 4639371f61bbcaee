"""Errors every layer may raise and catch."""


class ConfigurationError(RuntimeError):
    """A setting is missing or wrong: the message names the variable and what it needs."""
