"""The exceptions redisq raises; all derive from :class:`RedisqError`."""

from __future__ import annotations


class RedisqError(Exception):
    """Base class of every redisq error."""


class ConfigError(RedisqError):
    """A setting is unknown, missing or has a bad value."""


class SerializationError(RedisqError, TypeError):
    """A value cannot be carried as JSON (refused at enqueue time)."""


class UnknownTask(RedisqError):
    """A task name is not registered with the app."""


class ServerNotFound(RedisqError):
    """No Redis-compatible server binary is available to start."""


class JobFailed(RedisqError):
    """The job ended in failure; carries the task's error type and message."""

    def __init__(self, job_id: str, error_type: str, message: str, traceback: str = "") -> None:
        super().__init__(f"job {job_id} failed: {error_type}: {message}")
        self.job_id = job_id
        self.error_type = error_type
        self.message = message
        self.traceback = traceback


class JobTimeout(RedisqError, TimeoutError):
    """Waiting for a job's result took longer than the caller allowed."""


class DuplicateJob(RedisqError):
    """A job with the same unique key is already queued or running."""

    def __init__(self, existing_id: str) -> None:
        super().__init__(f"a job with the same unique key is already queued or running: {existing_id}")
        self.existing_id = existing_id


class NotReplicated(RedisqError):
    """A durable enqueue was written to the master but not confirmed by enough replicas in
    time; retrying with the same ``job_id`` is safe (a queued job id is not queued twice)."""


class LockNotAcquired(RedisqError):
    """A distributed lock could not be acquired before the deadline."""


class Retry(RedisqError):  # control flow, named for what the task asks
    """Raise from a task to ask for another attempt, optionally after ``delay_s`` seconds."""

    def __init__(self, delay_s: float | None = None, reason: str = "") -> None:
        super().__init__(reason or "retry requested")
        self.delay_s = delay_s
