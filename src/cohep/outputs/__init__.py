"""What a run leaves behind (records, manifest, checkpoints, report, figures) and how it is read back."""
