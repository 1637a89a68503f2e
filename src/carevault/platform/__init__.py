"""The ground floor: shared infrastructure with no domain in it.

What lives here: atomic file writes (``files``) and plain-text tables (``tables``). The rule
that keeps it the ground floor: standard library only, and nothing from ``carevault`` — so
every layer above, ``crypto`` included, may import it without creating a cycle.
"""
