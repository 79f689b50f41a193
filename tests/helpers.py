"""Assertions shared by the study tests."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import pytest

from explainlab.cli import run
from explainlab.errors import ConfigValueError


def assert_run_refuses(compose: Callable, overrides: Sequence[str], key: str) -> None:
    """Running the composed config fails with a ConfigValueError that names `key`."""
    with pytest.raises(ConfigValueError, match=re.escape(key)):
        run(compose(list(overrides)))
