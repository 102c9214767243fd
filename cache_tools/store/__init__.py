"""The cache on disk: its HDF5 layout and validation (:mod:`.schema`), the lazy reader
(:mod:`.reader`, ``open_cache``), low-level HDF5 helpers (:mod:`.h5io`), and concatenating
parts or shards into one cache (:mod:`.shards`)."""
