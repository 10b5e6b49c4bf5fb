"""The one exception type for bad input.

Anything a user can cause (a missing path, an unsupported model, a malformed file) raises
`FrankensteinError` with a one-line message; the CLI prints it as `frankenstein: error: ...`
and exits non-zero. Any other exception is a bug and keeps its traceback.
"""


class FrankensteinError(Exception):
    """A user-facing error whose message is one line that names the problem."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
