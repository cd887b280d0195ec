"""Business logic and queries, independent of HTTP."""
