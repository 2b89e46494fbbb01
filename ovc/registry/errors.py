"""Registry errors: one :class:`RegistryError` family under :class:`ovc.errors.OvcError`.

Callers branch on these types (``retryable`` says whether a retry can help), never on message text.
"""

from __future__ import annotations

from ovc.errors import EXIT_TEMPFAIL, InputError, OvcError


class RegistryError(OvcError, RuntimeError):
    """A registry operation that cannot proceed (names the vocabulary/model version/label)."""


class ReadOnlyRegistryError(RegistryError):
    """The registry cannot be written (read-only file, directory or database role); not retryable."""


class RegistryBusyError(RegistryError):
    """The write lock stayed taken past the retries (a long writer); retrying later can succeed."""

    retryable = True
    exit_code = EXIT_TEMPFAIL


class NotFoundError(RegistryError):
    """An unknown vocabulary, model version or label."""


class EncodeError(RegistryError):
    """``encode_fn`` returned something that is not a finite ``(n, dim)`` array."""


class RegistryNotFoundError(RegistryError):
    """No registry where one is expected; read paths never create one (the message says where to point)."""


class RegistrySchemaError(RegistryError):
    """The registry's schema revision is not the one this ovc reads (readers never migrate)."""


class InvalidNameError(RegistryError, InputError):
    """A vocabulary or model version name that cannot be stored (empty, too long, control characters)."""
