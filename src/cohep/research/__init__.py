"""Off by default and never on the honest path: dishonest members and degraded data, for studying the protocol."""
