"""Front ends: the ``tflocal`` command line (:mod:`.cli`, one module per subcommand in
:mod:`.commands`, flags generated from the typed configs by :mod:`.flags`), the pipeline that
runs cache -> train -> evaluate -> report (:mod:`.pipeline`), the quickstart, and ``tflocal
serve`` (:mod:`.serve`). Nothing below this package parses arguments."""
