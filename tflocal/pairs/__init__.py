"""The one path from records to what a head scores: :class:`~tflocal.pairs.batch.PairBatch`
(the contract every head reads), its assembly from a cache or raw inputs
(:mod:`.assemble`), and training units and candidate sets (:mod:`.candidates`)."""
