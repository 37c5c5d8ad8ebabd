"""Figures people expect: round curves with the vote grid, training curves, event displays."""
import matplotlib

matplotlib.use("Agg")
