"""Where an embedder runs: execution providers and their own environments, the provider worker process, node placement."""
