"""Every error clarad raises on purpose carries a one-line reason a person can act on.

    ClaradError
    ├── ConfigError        a setting is refused at start-up (names the key)
    ├── RejectedDrop       an inbox item cannot be accepted (goes to rejected/ with the reason)
    │   ├── ModelRejected
    │   └── PipelineRejected
    ├── TransitionError    an illegal lifecycle move (names the entity, its state and the event)
    ├── TritonError        a tritonserver failed to start, load or stop
    └── ControlError       the control socket could not be reached or refused a request

Any other exception escaping clarad is a bug.
"""


class ClaradError(Exception):
    """Base class; ``str(error)`` is the one-line reason."""


class ConfigError(ClaradError):
    pass


class RejectedDrop(ClaradError):
    """``label`` is a short, bounded category for the rejection metric (e.g. "unsafe", "config")."""

    def __init__(self, reason: str, label: str = "invalid") -> None:
        super().__init__(reason)
        self.label = label


class ModelRejected(RejectedDrop):
    pass


class PipelineRejected(RejectedDrop):
    """``problems``: every problem found, one line each; ``str`` is the first (and how many more)."""

    def __init__(self, reason: str, label: str = "invalid", problems: "list[str] | None" = None) -> None:
        self.problems = problems or [reason]
        more = len(self.problems) - 1
        super().__init__(f"{reason} (and {more} more problem(s): `clarad pipelines validate` lists all)"
                         if more else reason, label)


class TransitionError(ClaradError):
    pass


class TritonError(ClaradError):
    pass


class ControlError(ClaradError):
    pass
