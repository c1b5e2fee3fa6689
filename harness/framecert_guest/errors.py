"""The one exception type for failures a user can cause or fix: the CLI prints it as a single line."""


class GuestError(Exception):
    """An expected failure (bad input, failed build, guest panic, timeout): message says what and why."""


class UsageError(GuestError):
    """Arguments that cannot be used (found before any build or boot): exit status 2, like argparse's own."""
