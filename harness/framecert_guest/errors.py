"""The one exception type for failures a user can cause or fix: the CLI prints it as a single line."""


class GuestError(Exception):
    """An expected failure (bad input, failed build, guest panic, timeout): message says what and why."""
