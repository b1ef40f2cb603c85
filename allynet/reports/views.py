"""reports HTTP endpoints."""
