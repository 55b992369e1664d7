"""Errors meant for the user: the CLIs print their message (no traceback) and exit non-zero.

Library code raises these instead of calling ``sys.exit``; every message says what is wrong,
where (file, line/row, column) and what to do about it.
"""

from __future__ import annotations


class GstError(Exception):
    """Base class of every error whose message is addressed to the user."""

    exit_code: int = 2


class InputError(GstError):
    """Bad user input: a malformed file, an impossible config value, an unknown id."""


class ArtifactError(GstError):
    """An artifact on disk (or about to be written) breaks its contract in ``specs/``."""


class OutputExistsError(GstError):
    """The output directory exists already and ``overwrite`` is not set."""


class EnvironmentUnavailableError(GstError):
    """Something the config asks for is not available here (GPU, package, engine)."""


class RunInterrupted(GstError):
    """A stage stopped early (Ctrl-C, crash); what was measured was kept, marked incomplete."""

    exit_code = 130
