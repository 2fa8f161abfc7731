"""The errors of bad input, each message one line that says what, where and how to fix it.

The command line prints such a message as it is and exits 2; so does every other layer's own
error (StoreError, BackendError), declared beside what raises it."""


class ConfigError(Exception):
    """A matrix file or option that cannot be used; the message says where and how to fix it."""


class DataError(Exception):
    """A task's data is missing, corrupt or cannot supply what was asked; the message says how to fix it."""


# How a process that ran a user's code ended, in words, for the reasons stored with its runs
# (a local worker's exit code, a forked check's status): the signal's name, then what it means.
SIGNAL_MEANINGS = {
    "SIGKILL": "killed, as the kernel's out-of-memory killer does when memory runs out",
    "SIGSEGV": "a crash in native code",
    "SIGABRT": "aborted by native code",
}
ENDED_ITSELF = "it ended itself, as os._exit does"

