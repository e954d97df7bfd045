"""fieldsync client: device profile, outbox, sync, coordinator view, CLI."""
