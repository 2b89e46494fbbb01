"""One error base class for everything a user can get wrong (lowest layer: imports nothing of ovc).

Every user-facing failure — a bad config value, an unknown vocabulary, a read-only or missing
registry, an unreadable video, a manifest row outside the data roots — raises a subclass of
:class:`OvcError`. The CLI catches ``OvcError`` once and prints its message on one line with exit
code 2; callers (flows, the classifier) branch on the *type*, never on message text.

``retryable`` says whether running the same thing again can succeed: ``False`` for deterministic
errors (bad input, config, read-only registry), ``True`` for transient ones (a lock held too long,
a server that is briefly unreachable). Flows retry only retryable errors.
"""

from __future__ import annotations


class OvcError(Exception):
    """Base of every user-facing ovc error (the message names the file, key, row or label)."""

    retryable: bool = False
    exit_code: int = 2  # EXIT_USAGE


class InputError(OvcError, ValueError):
    """A user-supplied item (label argument, file, path) cannot be used; names the item."""


EXIT_USAGE = 2  # deterministic user-facing error: the same command fails the same way
EXIT_TEMPFAIL = 75  # sysexits EX_TEMPFAIL: a retry may succeed (flows retry only these)


class TransientError(OvcError):
    """A failure that may succeed on retry (lock timeout, server briefly unreachable)."""

    retryable = True
    exit_code = EXIT_TEMPFAIL


def one_line(text: object) -> str:
    """``text`` folded onto one line (runs of whitespace, newlines included, become one space)."""
    return " ".join(str(text).split())


def markdown_cell(text: object) -> str:
    """``text`` safe inside a markdown table cell: one line, ``|`` escaped (a multi-line error stays in its row)."""
    return one_line(text).replace("|", "\\|")
