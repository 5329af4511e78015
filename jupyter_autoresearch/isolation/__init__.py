"""Running one candidate cell in isolation: the warm worker, its forked children, off-limits protection."""
