"""help_requests HTTP endpoints."""
