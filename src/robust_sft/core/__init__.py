"""Shared by every stage and importing nothing else of the package: atomic artifacts, typed configs,
hashing, figures and the run directory's layout."""
