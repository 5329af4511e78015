"""The session folder on disk: the append-only log, the task document, ideas; reading pi-autoresearch logs."""
