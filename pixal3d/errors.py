"""Errors that reach the user as one line (the CLI prints them and exits with code 2)."""


class UserError(Exception):
    """Bad input or a missing resource the user can fix: shown as one line, never a traceback."""
