"""Argument checks shared by the configurable classes: a bad size or count fails where it is given, named."""

from __future__ import annotations

from numbers import Integral


def _check_ints(minimum: int, what: str, values: dict[str, object]) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, Integral):
            raise TypeError(f"{name} must be an integer, got {value!r}")
        if value < minimum:
            raise ValueError(f"{name} must be {what}, got {value}")


def check_positive(**values: int) -> None:
    """Raise naming the first argument that is not an integer >= 1 (sizes, counts: ``ensemble_size=0`` fails)."""
    _check_ints(1, "a positive integer", values)


def check_non_negative(**values: int) -> None:
    """Raise naming the first argument that is not an integer >= 0 (``num_layers=0`` is a linear model)."""
    _check_ints(0, "a non-negative integer", values)
