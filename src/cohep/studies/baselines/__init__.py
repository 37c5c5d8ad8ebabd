"""What cohep is measured against: other systems run on cohep's own task (data, split, model, training)."""
