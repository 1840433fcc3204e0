"""redisq: a small, correct Redis-backed job queue and pub/sub library with a worker daemon."""

from .app import App
from .canvas import Signature, chain, group
from .errors import (
    ConfigError,
    DuplicateJob,
    JobFailed,
    JobTimeout,
    LockNotAcquired,
    NotReplicated,
    RedisqError,
    Retry,
    SerializationError,
    UnknownTask,
)
from .job import Job, JobContext, current_job
from .locks import Lock
from .middleware import Middleware
from .model import Envelope, Outcome
from .tasks import CallOptions
from .workflow_jobs import ChainJob, GroupJob

__version__ = "0.1.0"

__all__ = [
    "App",
    "CallOptions",
    "ChainJob",
    "ConfigError",
    "DuplicateJob",
    "Envelope",
    "GroupJob",
    "Job",
    "JobContext",
    "JobFailed",
    "JobTimeout",
    "Lock",
    "LockNotAcquired",
    "Middleware",
    "NotReplicated",
    "Outcome",
    "RedisqError",
    "Retry",
    "SerializationError",
    "Signature",
    "UnknownTask",
    "__version__",
    "chain",
    "current_job",
    "group",
]
