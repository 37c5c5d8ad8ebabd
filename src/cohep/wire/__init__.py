"""How weights are encoded, stored, fetched and checked, and how signed ballots travel between members."""
