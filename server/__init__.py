"""fieldsync sync server."""
