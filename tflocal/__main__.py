"""``python -m tflocal``: the same as the ``tflocal`` command."""

from tflocal.app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
