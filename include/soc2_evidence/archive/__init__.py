"""A run's staged evidence to a WORM store: the commit protocol, the layout, the stores, and verify."""
