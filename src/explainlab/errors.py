"""Exceptions with messages that tell the user which key or file is wrong and what to do."""

from __future__ import annotations

from collections.abc import Iterable


class ExplainlabError(Exception):
    """Base class for errors the user can fix by changing config, data or files."""


class ConfigValueError(ExplainlabError, ValueError):
    """A config value is out of range or not one of the allowed choices."""

    def __init__(self, key: str, value: object, expected: str) -> None:
        self.key, self.value = key, value
        super().__init__(f"{key}={value!r} is invalid: expected {expected}.")


class DatasetNotFoundError(ExplainlabError, FileNotFoundError):
    """An offline data set is missing; the message says which folder to fill."""


class DataFileError(ExplainlabError, ValueError):
    """A data file exists but is damaged or holds something else; the message names the file."""


class CheckpointError(ExplainlabError):
    """A checkpoint file is unreadable or does not fit the model."""


def check_choice(key: str, value: object, allowed: Iterable[object]) -> None:
    """Refuse `value` unless it is in `allowed`, naming the key and the choices."""
    allowed = list(allowed)
    if value not in allowed:
        raise ConfigValueError(key, value, "one of " + ", ".join(map(str, allowed)))


def check_int(key: str, value: object, *, minimum: int = 0, optional: bool = False) -> None:
    """Refuse anything but an integer >= minimum (or None when optional)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigValueError(key, value, f"an integer >= {minimum}" + (" or null" if optional else ""))


def check_float(key: str, value: object, *, low: float, high: float, closed: bool = True) -> None:
    """Refuse anything but a finite number in [low, high] (or (low, high) when not closed)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = (low <= v <= high) if closed else (low < v < high)
    if not ok:
        bounds = f"[{low}, {high}]" if closed else f"({low}, {high})"
        raise ConfigValueError(key, value, f"a number in {bounds}")


class NonFiniteModelError(ExplainlabError):
    """Training produced NaN/inf weights or test loss: nothing is cached, the spec is named."""


class RunInterrupted(BaseException):
    """SIGTERM arrived (a batch system's time limit, `kill`): the run stops, marked interrupted.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` on the way swallows it.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"received signal {signum}")
