"""What one round is: the vote rule, the round shape and the average, the screens, one member's duty."""
