"""The errors of bad input, each message one line that says what, where and how to fix it.

The command line prints such a message as it is and exits 2; so does every other layer's own
error (StoreError, BackendError), declared beside what raises it."""


class ConfigError(Exception):
    """A matrix file or option that cannot be used; the message says where and how to fix it."""


class DataError(Exception):
    """A task's data is missing, corrupt or cannot supply what was asked; the message says how to fix it."""
