"""Turn redis-py exceptions into the worker error tree at the backend boundary."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from redis import exceptions as rex
from worker_core.errors import BackendError, BackendUnavailableError, ConfigurationError

__all__ = ("redis_errors", "translate")


def translate(exc: BaseException, where: str) -> BaseException:
    """The worker error for a redis-py (or socket) exception raised while talking to ``where``."""
    if isinstance(exc, (rex.AuthenticationError, rex.AuthorizationError, rex.AuthenticationWrongNumberOfArgsError)):
        return ConfigurationError(f"{where}: authentication failed ({_first_line(exc)})")
    if isinstance(exc, rex.InvalidResponse):
        return ConfigurationError(f"{where} does not speak the Redis protocol ({_first_line(exc)})")
    if isinstance(exc, rex.ResponseError):
        text = _first_line(exc)
        if text.startswith(("NOAUTH", "WRONGPASS", "NOPERM")):
            return ConfigurationError(f"{where}: authentication failed ({text})")
        if text.startswith(("LOADING", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "BUSY")):
            return BackendUnavailableError(f"{where} is not ready ({text})")
        return BackendError(f"{where}: {text}")
    if isinstance(exc, (rex.ConnectionError, rex.TimeoutError, rex.ClusterError, OSError, TimeoutError)):
        return BackendUnavailableError(f"{where} is unreachable ({_first_line(exc) or type(exc).__name__})")
    if isinstance(exc, rex.RedisError):
        return BackendError(f"{where}: {_first_line(exc) or type(exc).__name__}")
    return exc


@contextlib.contextmanager
def redis_errors(where: str) -> Iterator[None]:
    """Re-raise redis-py and socket errors as worker errors naming ``where`` (never a password)."""
    try:
        yield
    except (rex.RedisError, OSError, TimeoutError) as exc:
        raise translate(exc, where) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
