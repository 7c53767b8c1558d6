"""The typed errors of dinokit, one per kind of user mistake, and the exit status each gives the CLI."""
from __future__ import annotations


class UsageError(ValueError):
    """Bad options or an output folder that belongs to another configuration (exit status 2)."""


class BackendError(UsageError):
    """A backend that cannot run here (wrong device, missing package, input of another size)."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: training stops before the checkpoint is overwritten."""


EXIT_OK, EXIT_FATAL, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


def exit_status(error: BaseException) -> int | None:
    """The CLI's exit status for an error a user can act on; None for a bug (it propagates, with its trace)."""
    if isinstance(error, UsageError):
        return EXIT_USAGE
    if isinstance(error, (TrainingDiverged, FileNotFoundError, ValueError, OSError)):
        return EXIT_FATAL
    return None
