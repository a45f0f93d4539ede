"""`pipeline serve`: the OpenAI-compatible HTTP server, and which configuration it serves."""
