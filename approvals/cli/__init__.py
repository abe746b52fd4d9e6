"""The signoff command line."""
