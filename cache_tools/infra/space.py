"""Disk space: checked before a large write, and a failed write named for what it is.

HDF5 does not recover from a write that fails half way (the errors cascade through every open
handle and can end in a crash), so the writers check the free space, and the file-size limit of
the process, *before* they start a file, and turn a failure that still happens (another program
filled the disk meanwhile) into one :class:`~cache_tools.errors.UserError`.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

from cache_tools.errors import UserError

MARGIN = 256 << 10
"""Bytes added to every estimate (HDF5 metadata, chunk padding), besides 2% of it."""
SPACE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def free_bytes(directory: str | Path) -> int:
    """Bytes this process may still write into one file under ``directory``: the free disk space,
    or the process's file-size limit (``ulimit -f``) when that is lower."""
    directory = Path(directory)
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    free = shutil.disk_usage(directory).free
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if soft != resource.RLIM_INFINITY:
            free = min(free, soft)
    except (ImportError, ValueError, OSError):
        pass
    return int(free)


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def check_space(path: str | Path, needed: int, what: str, advice: str) -> None:
    """UserError when ``needed`` bytes (plus a margin) cannot be written at ``path``."""
    path = Path(path)
    free = free_bytes(path.parent)
    needed = needed + needed // 50 + MARGIN
    if free < needed:
        raise UserError(
            f"no space left for {what} {path}: it needs about {mib(needed)}, "
            f"{mib(free)} can be written there (free disk space or file-size limit). {advice}"
        )


def no_space(err: BaseException) -> bool:
    """Whether ``err`` (an OSError, or h5py's wrapping HDF5's) means the disk or a size limit is full."""
    if getattr(err, "errno", None) in SPACE_ERRNOS:
        return True
    text = str(err)
    codes = [int(c) for c in re.findall(r"errno = (\d+)", text)]
    low = text.lower()
    return any(c in SPACE_ERRNOS for c in codes) or "no space left" in low or "file too large" in low


def space_reason(err: BaseException) -> str:
    code = getattr(err, "errno", None)
    if code is None:
        found = re.findall(r"errno = (\d+)", str(err))
        code = int(found[0]) if found else errno.ENOSPC
    return os.strerror(code)
