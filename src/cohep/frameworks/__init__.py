"""Adapters that make a framework's model a ``cohep.learner.Learner``."""
