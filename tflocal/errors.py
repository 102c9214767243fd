"""Errors shown to users as one clear message (no traceback) by the CLI.

There is one user-facing error type for the whole stack: the lower library's
(:class:`cache_tools.errors.UserError`), so the CLI shows errors raised in either package alike.
"""

from cache_tools.errors import CacheFormatError, UserError

__all__ = ["CacheFormatError", "UserError"]
