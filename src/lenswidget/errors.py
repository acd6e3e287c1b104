"""Errors that lenswidget shows to the user.

Every problem with user input (a prompt, an answer token, a layer index, a message from the
front end) is raised as a :class:`LensError` subclass whose message says what was wrong and what to
do instead. Widgets catch these, show the message in the view and keep their state.
"""

from __future__ import annotations


class LensError(ValueError):
    """Base class: a problem the user can fix. ``str(err)`` is the message shown in the widget."""

    kind = "error"

    def __init__(self, message: str, *, details: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: JSON-able extra information for the front end (e.g. two tokenizations that differ).
        self.details = details or {}

    def to_json(self) -> dict:
        return {"kind": self.kind, "message": self.message, "details": self.details}


class InputError(LensError):
    """A prompt, token, answer or index the model cannot take."""

    kind = "input"


class ProtocolError(LensError):
    """A malformed or unknown message from the front end."""

    kind = "protocol"


class ModelLoadError(LensError):
    """A model could not be loaded (missing package, no network for a hub name, ...)."""

    kind = "model"


class Cancelled(LensError):
    """A long computation was cancelled by the user; partial results may exist."""

    kind = "cancelled"


class Busy(LensError):
    """The session is already running a computation."""

    kind = "busy"
