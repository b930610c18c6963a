"""The exception tree. Library code raises only these.

    AbstractVisionError
    ├── BackendNotConfiguredError        VisionManager has no backend
    ├── OptionalDependencyMissingError   an engine's extra is not installed (also ImportError)
    ├── UnknownModelError                model id not in the registry / not configured (also LookupError)
    ├── CapabilityNotSupportedError      model or backend cannot run the task / option
    ├── InvalidRequestError              a value out of bounds or of the wrong kind (also ValueError)
    │   └── InvalidImageError            image bytes that are not a safe, decodable image
    ├── RegistryError                    the capability registry file is malformed (also ValueError)
    ├── ArtifactNotFoundError            a well-formed id the store does not hold (also LookupError)
    ├── GenerationCancelledError         the caller cancelled; nothing was stored
    ├── BackendError                     the engine failed; the message says what to do
    │   ├── OutOfMemoryError             the device ran out of memory (freed what it could)
    │   └── ReplicaLostError             a Ray Serve replica died mid-call; nothing was stored
    └── BusyError                        the queue is full; nothing started, retry later

The MCP layer turns every one of these into an ``isError`` tool result carrying ``str(exc)``,
so messages are written for the agent that has to fix its call. Every one pickles with its
fields (a Ray Serve replica sends them back to the front end).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AbstractVisionError",
    "ArtifactNotFoundError",
    "BackendError",
    "BackendNotConfiguredError",
    "BusyError",
    "CapabilityNotSupportedError",
    "GenerationCancelledError",
    "InvalidImageError",
    "InvalidRequestError",
    "OptionalDependencyMissingError",
    "OutOfMemoryError",
    "RegistryError",
    "ReplicaLostError",
    "UnknownModelError",
]


class AbstractVisionError(Exception):
    """Base of every error abstractvision raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take keyword-only or extra arguments; rebuild from args + fields instead.
        return _restore, (type(self), self.args, dict(self.__dict__))


def _restore(cls: type[AbstractVisionError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    exc = cls.__new__(cls, *args)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class BackendNotConfiguredError(AbstractVisionError):
    """A generation method was called on a VisionManager without a backend."""


class OptionalDependencyMissingError(AbstractVisionError, ImportError):
    """An engine needs a package from an extra (or, with ``extra=None``, one no extra pulls in)."""

    def __init__(
        self, package: str, extra: str | None = None, *, feature: str | None = None
    ) -> None:
        self.package = package
        self.extra = extra
        if extra is None and feature is None and " " in package:  # 0.3.x: the message alone
            super().__init__(package)
            return
        what = feature or "this feature"
        install = f"'abstractvision[{extra}]'" if extra else package
        super().__init__(f"{what} needs the '{package}' package: pip install {install}")


class UnknownModelError(AbstractVisionError, LookupError):
    """A model id that the registry (or the configured backend) does not know."""

    def __str__(self) -> str:  # LookupError would repr() the message
        return str(self.args[0]) if self.args else ""


class CapabilityNotSupportedError(AbstractVisionError):
    """The model or backend cannot do what was asked (task, mask, option)."""


class InvalidRequestError(AbstractVisionError, ValueError):
    """A request value is wrong. ``field``, ``value`` and ``limit`` say which and why."""

    def __init__(
        self,
        field: str,
        value: Any,
        limit: str,
        *,
        message: str | None = None,
    ) -> None:
        self.field = field
        self.value = value
        self.limit = limit
        shown = _short_repr(value)
        super().__init__(message or f"{field}={shown} is invalid: {limit}")


class InvalidImageError(InvalidRequestError):
    """Bytes given as an image that are not a safe, decodable image of an allowed format."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field, "<image bytes>", reason, message=f"{field}: {reason}")


class RegistryError(AbstractVisionError, ValueError):
    """The registry file is malformed; the message names the file and the bad field."""


class ArtifactNotFoundError(AbstractVisionError, LookupError):
    """A well-formed artifact id that the store does not hold."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class GenerationCancelledError(AbstractVisionError):
    """The caller cancelled the generation; nothing was stored."""


class BackendError(AbstractVisionError):
    """The engine failed while generating; the backend stays usable."""


class OutOfMemoryError(BackendError):
    """The device ran out of memory; cached memory was released before raising."""


class ReplicaLostError(BackendError):
    """The Ray Serve replica running the call died (and retries, if any, were used up)."""


class BusyError(AbstractVisionError):
    """Too many generations are queued; nothing was started. Retry after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def _short_repr(value: Any, limit: int = 80) -> str:
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 15]}...<{len(text)} chars>"
