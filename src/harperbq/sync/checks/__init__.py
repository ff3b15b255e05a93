"""Is Harper right: reconciliation of late rows, re-sync, validation, digests, the periodic jobs
that run them."""
