"""One security state for every process (issue 12): the shared store behind Django's caches."""
