"""The ``istd`` command-line tool: synthetic data, training, evaluation and prediction.

Run ``istd --help`` (or ``python -m istd_kernels --help``). :class:`CLIError` is the one
error class the subcommands raise for a user's mistake; :func:`istd_kernels.cli.main.main`
turns it into a single ``istd: error: ...`` line and a non-zero exit status.
"""


class CLIError(Exception):
    """A user-facing error: the message names the thing that is wrong and what was expected."""


__all__ = ["CLIError"]
