"""redisq: a small, correct Redis-backed job queue and pub/sub library with a worker daemon."""

from .errors import (
    ConfigError,
    DuplicateJob,
    JobFailed,
    JobTimeout,
    LockNotAcquired,
    RedisqError,
    Retry,
    SerializationError,
    UnknownTask,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DuplicateJob",
    "JobFailed",
    "JobTimeout",
    "LockNotAcquired",
    "RedisqError",
    "Retry",
    "SerializationError",
    "UnknownTask",
    "__version__",
]
