"""cache_tools: run a frozen vision-language encoder once and store its patch, token and global
embeddings in a self-describing HDF5 cache (see `cache_tools.store.schema`)."""

__version__ = "0.1.0"
