"""Errors shown to users as one clear message (no traceback) by the CLI."""


class UserError(Exception):
    """Bad input from the user (unknown name, missing file, bad config key): the CLI prints
    the message alone and exits with status 2. Messages name the item and what to do."""
