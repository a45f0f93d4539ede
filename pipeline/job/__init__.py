"""One job, from a composed config to its record: run (prepare, execute), stages (the pipeline of stages),
results (the typed job state and the one naming of its metrics and tags), checks, timing, workload_checks."""
