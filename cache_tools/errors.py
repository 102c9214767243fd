"""The errors of ``cache_tools``: bad input a user can fix, shown as one clear message.

``cache_tools`` stands alone (it never imports ``tflocal``); the ``tflocal`` CLI shows every
:class:`UserError` (and so every :class:`CacheFormatError`) as one line and exits with status 2.
"""


class UserError(Exception):
    """Bad input from the user (unknown name, missing file, bad config key): the message names
    the item and what to do, and the CLI prints it alone (no traceback)."""


class CacheFormatError(UserError):
    """The file is not a tflocal cache, or one written by another format version."""
