"""The typed errors of dinokit, one per kind of user mistake, and the exit status each gives the CLI.

Every error a user can act on is a `DinokitError` (or a plain `OSError`/`ValueError` from the file system
or an argument check); the CLI prints it as one line naming the culprit and exits with its status.
Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

EXIT_OK, EXIT_FATAL, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


class DinokitError(Exception):
    """A mistake in what was asked or given, not a bug: the CLI prints the message alone."""

    exit_status = EXIT_FATAL


class UsageError(DinokitError, ValueError):
    """Bad options or an output folder that belongs to another configuration (exit status 2)."""

    exit_status = EXIT_USAGE


class BackendError(UsageError):
    """A backend that cannot run here (wrong device, missing package, input of another size)."""


class OutputBusyError(UsageError):
    """Another process is writing the same output (its lock is held)."""


class InputFileError(DinokitError, ValueError):
    """A file given to dinokit that cannot be used (an image, checkpoint, YAML, embeddings or index
    file): names the file and the reason (exit status 1)."""

    def __init__(self, path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self):  # picklable across DataLoader workers and Ray
        return type(self), (self.path, self.reason)


class TrainingDiverged(DinokitError, RuntimeError):
    """The loss became NaN or infinite: training stops before the checkpoint is overwritten."""


def first_line(error: BaseException) -> str:
    """The first line of an error's message (libraries put the reason there and pages of detail after),
    or its type's name when it has no message."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def exit_status(error: BaseException) -> int | None:
    """The CLI's exit status for an error a user can act on; None for a bug (it propagates, with its trace)."""
    if isinstance(error, DinokitError):
        return error.exit_status
    if isinstance(error, (OSError, ValueError)):
        return EXIT_FATAL
    return None


def refuse_changed_settings(output, before: dict, now: dict, *, allowed=()) -> None:
    """A `UsageError` naming every setting whose value differs between what `output` was made with
    (`before`) and what is asked now, except those in `allowed`; keys `before` lacks are not compared
    (an output from an older dinokit)."""
    changed = {k: (before[k], v) for k, v in now.items() if k in before and k not in allowed and before[k] != v}
    if changed:
        said = "; ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in changed.items())
        raise UsageError(f"{output} was made with other settings ({said}); give the same settings to continue, "
                         "or choose another output")


def flat_settings(tree: dict, prefix: str = "") -> dict:
    """A nested config as {"optim.base_lr": 0.004, ...}, the names users write on the command line."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flat_settings(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
