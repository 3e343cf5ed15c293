"""Route modules: plain async functions, one resource per module."""
