"""Plumbing shared by every stage: precision and device (:mod:`.precision`), locks on an
output, disk-space checks, progress bars, and token padding. Imports nothing of the stages."""
