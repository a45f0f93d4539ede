"""One job, from a composed config to its record: the stages (run), the timing stages, the workload checks."""
