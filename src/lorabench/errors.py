"""User-facing errors: each one is printed as a single line and ends the CLI with exit status 2."""


class LorabenchError(Exception):
    """Bad input that the user can fix (a config key, a data file, a model path)."""


class ConfigError(LorabenchError):
    """A config key is unknown or its value is invalid."""


class DataError(LorabenchError):
    """A data file is missing or malformed; the message names the file and line."""


class ModelError(LorabenchError):
    """A model cannot be loaded or does not fit the requested head."""
