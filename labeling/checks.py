"""Argument checks shared by the public functions of :mod:`radloop.labeling`."""

from __future__ import annotations


def require_many(value, argument: str, what: str, *, hint: str | None = None) -> None:
    """Raise ``TypeError`` unless ``value`` is an iterable of items other than one ``str``/``bytes``.

    A bare string is iterable, so a function expecting many texts (or terms, or mentions) would
    silently take it character by character.

    Args:
        value: The argument.
        argument: Its name, for the message.
        what: What its items should be ("report texts"), for the message.
        hint: What to do instead, appended to the message.
    """
    if isinstance(value, (str, bytes, bytearray)) or not hasattr(type(value), "__iter__"):
        message = f"{argument} must be an iterable of {what}, got {type(value).__name__}"
        raise TypeError(f"{message}; {hint}" if hint else message)
