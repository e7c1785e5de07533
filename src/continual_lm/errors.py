"""User-facing errors: each carries one line that names the file, record or key at fault."""


class ContinualLMError(Exception):
    """Base class; the CLI prints ``str(error)`` as a single line and exits with status 2."""


class DataError(ContinualLMError):
    """Bad or missing data: malformed JSON, missing field, label outside the label set, empty split."""


class ConfigError(ContinualLMError):
    """An unknown or inconsistent configuration key, method, task or model path."""


class Interrupted(ContinualLMError):
    """SIGINT or SIGTERM during a run: a resume point was written; ``continual-lm run --resume`` continues it."""


class NonFiniteError(ContinualLMError):
    """A NaN or infinite loss or gradient (``training.nan_policy: stop``)."""
