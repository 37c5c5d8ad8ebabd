"""Training and scoring one model alone: the paper's Figure 4 and the evaluation of any checkpoint."""
