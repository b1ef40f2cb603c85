"""skills HTTP endpoints."""
