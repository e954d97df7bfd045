"""fieldsync's pure core: canonical encoding, the crypto recipe, the merge, the key log.

Pure: no I/O, no clock, no randomness unless passed in. Everything that touches a
disk, a socket or the time lives in `server/` or `client_sync/`.
"""

PROTOCOL_VERSION = "fieldsync/v1"
