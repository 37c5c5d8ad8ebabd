"""What runs tell: whose data helps, which architecture wins, what Flower gets on the same task."""
