"""continual_lm: continual learning of language models — methods, benchmarks, metrics and analyses."""
from .config import ExperimentConfig, load_config, parse_config
from .data.task import Example, Task
from .errors import ConfigError, ContinualLMError, DataError

__all__ = ["ConfigError", "ContinualLMError", "DataError", "Example", "ExperimentConfig", "Task", "load_config",
           "parse_config"]
__version__ = "0.1.0"
