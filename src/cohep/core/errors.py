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


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C in a run that kept its finished rounds: ``line`` says where it stopped and how to resume
    (the CLI prints it and exits 130). A KeyboardInterrupt, so code that knows nothing of it still stops."""

    exit_code = 130

    def __init__(self, line: str, out_dir=None, rounds_done: int = 0):
        super().__init__(line)
        self.line, self.out_dir, self.rounds_done = line, out_dir, rounds_done
