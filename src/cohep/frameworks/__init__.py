"""Adapters that make a framework's model a ``cohep.frameworks.learner.Learner``."""
