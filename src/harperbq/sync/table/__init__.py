"""One table's pipeline on one worker: plan a window, read it, keep the newest version per key,
upsert, checkpoint."""
