"""Training a head on a cache: the loop (:mod:`.loop`, ``train(cfg)``), its recipe
(:mod:`.config`, ``TrainConfig``), the loss, the optimizer and schedule, validation during
training, and the run folder (:mod:`.run_folder`: one writer, resumable, checkpoints never
non-finite)."""
