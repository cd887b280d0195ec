"""Local files a MySQL URL names (`ssl_ca`, `ssl_cert`, `ssl_key`, `ssl_capath`).

PyMySQL and the `ssl` module report a file they cannot open as a bare `[Errno 2] No
such file or directory`, naming neither the file nor the option, and it surfaces from
the connect call like a socket error: the operator is told to check the host and
port. Checking the files first turns it into an error that names the option.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

_FILE_OPTIONS = ("ssl_ca", "ssl_cert", "ssl_key")
_DIRECTORY_OPTIONS = ("ssl_capath",)


class UnreadableOptionFile(OSError):
    """A file (or directory) an option of the URL names cannot be used from here."""

    def __init__(self, option: str, path: str, reason: str, need: str) -> None:
        super().__init__(f"the option '{option}' names {path!r}, which {reason}")
        self.option = option
        self.path = path
        self.need = need  # what the option must name, for the hint


def check_option_files(query: Mapping[str, str | Sequence[str]]) -> None:
    """Raise `UnreadableOptionFile` for the first path option that cannot be read."""
    for option in _FILE_OPTIONS + _DIRECTORY_OPTIONS:
        path = query.get(option)
        if not isinstance(path, str) or not path:
            continue
        directory = option in _DIRECTORY_OPTIONS
        try:
            if directory:
                next(iter(Path(path).iterdir()), None)
            else:
                with Path(path).open("rb"):
                    pass
        except OSError as error:
            need = "a directory" if directory else "a file"
            raise UnreadableOptionFile(option, path, _why(error, directory), need) from error


def unreadable_contents(
    options: Sequence[str], query: Mapping[str, object], error: OSError, need: str
) -> UnreadableOptionFile:
    """The error for files that exist but that `ssl` could not load (not PEM, wrong key)."""
    named = [o for o in options if isinstance(query.get(o), str) and query.get(o)]
    option = "/".join(named) or options[0]
    path = ", ".join(str(query.get(o)) for o in named)
    reason = f"could not be loaded for TLS ({error})"
    return UnreadableOptionFile(option, path, reason, need)


def _why(error: OSError, directory: bool) -> str:
    kind = "directory" if directory else "file"
    if isinstance(error, FileNotFoundError):
        return f"does not exist here (no such {kind})"
    if isinstance(error, PermissionError):
        return f"this process may not read (permission denied on the {kind})"
    if isinstance(error, IsADirectoryError):
        return "is a directory, not a file"
    if isinstance(error, NotADirectoryError):
        return "is not a directory" if directory else "has a path part that is not a directory"
    return f"cannot be read ({error.strerror or error})"
