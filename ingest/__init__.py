"""The finding-event consumer: batching, dedupe, idempotent persistence."""
