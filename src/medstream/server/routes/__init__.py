"""REST routes under /rest/v1."""
