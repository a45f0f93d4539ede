"""The DVC stages of a study (dvc.yaml)."""
