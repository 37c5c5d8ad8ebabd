"""How to run, join, watch and audit an experiment: in one process, or one node per member on a chain."""
