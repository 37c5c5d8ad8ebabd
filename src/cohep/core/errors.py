"""User-facing errors: the CLI prints them as one line and exits with code 2, no traceback."""


class CohepError(Exception):
    """A problem with the user's input or environment (bad file, bad field, unreachable node)."""

    exit_code = 2


class ConfigError(CohepError):
    """A configuration field is missing, of the wrong type or out of range; the message names it."""


class DataError(CohepError):
    """A data file is missing, truncated or malformed; the message names the file."""


class IntegrityError(CohepError):
    """Bytes did not match the digest they were announced under (tampered or corrupted weights)."""


class ChainError(CohepError):
    """The chain node is unreachable or rejected a transaction."""
