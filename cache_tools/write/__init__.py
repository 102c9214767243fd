"""Writing a cache: ``build_cache(cfg)`` (:mod:`.build`) runs a source through an encoder
(:mod:`.parts`: one part, images and captions; :mod:`.encode`: records -> stored arrays) into
the chunked, resumable writer (:mod:`.writer`, :mod:`.arrays`); ``wds:`` sources are cached
shard by shard (:mod:`.webdataset`)."""
