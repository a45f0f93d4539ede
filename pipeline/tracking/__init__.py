"""Where a job's results go: the local records, MLflow logging, run names and parameter names, the run context, sync."""
