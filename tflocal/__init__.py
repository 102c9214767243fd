"""tflocal: learned localized scoring over frozen vision-language encoders."""

__version__ = "0.1.0"


def load_scorer(*args, **kwargs):
    """See :func:`tflocal.scoring.load_scorer`."""
    from tflocal.scoring import load_scorer as _load

    return _load(*args, **kwargs)
