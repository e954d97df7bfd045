"""marshmallow schemas: wire messages (`wire`) and the record types (`records`)."""
