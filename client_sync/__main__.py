"""`python -m client_sync` is `fieldsync`."""

from client_sync.cli import main

main()
