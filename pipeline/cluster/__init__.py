"""Scaling out: a local one-node Slurm cluster with a PostgreSQL-backed MLflow server, and the Slurm launcher's glue."""
