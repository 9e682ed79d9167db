"""Turn redis-py exceptions into the worker error tree at the admin boundary."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from redis import exceptions as rex
from worker_core.errors import BackendError, BackendUnavailableError, ConfigurationError

__all__ = ("redis_errors",)


@contextlib.contextmanager
def redis_errors(where: str) -> Iterator[None]:
    """Re-raise redis-py and socket errors as worker errors naming ``where`` (never a password)."""
    try:
        yield
    except (rex.AuthenticationError, rex.AuthorizationError, rex.AuthenticationWrongNumberOfArgsError) as exc:
        raise ConfigurationError(f"{where}: authentication failed ({_first_line(exc)})") from exc
    except rex.ResponseError as exc:
        text = _first_line(exc)
        if text.startswith(("NOAUTH", "WRONGPASS", "NOPERM")):
            raise ConfigurationError(f"{where}: authentication failed ({text})") from exc
        raise BackendError(f"{where}: {text}") from exc
    except (rex.ConnectionError, rex.TimeoutError, OSError, TimeoutError) as exc:
        raise BackendUnavailableError(f"{where} is unreachable ({_first_line(exc) or type(exc).__name__})") from exc
    except rex.RedisError as exc:
        raise BackendError(f"{where}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
