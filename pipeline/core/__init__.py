"""The bottom layer: errors and exit codes (errors), the shared vocabulary (vocab), atomic caches and JSON
cache entries (cache), redaction of secrets (redaction), ownership of temporaries and processes (ownership),
the one protocol for child processes (child), the machine lock (machine_lock), machine facts (machine), the
third-party log filter (logs), and the figures' common ground (plots). Imports nothing else from the package."""
