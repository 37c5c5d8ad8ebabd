"""What an experiment file can say: its sections, assembled and validated once."""
