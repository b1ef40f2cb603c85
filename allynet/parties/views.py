"""parties HTTP endpoints."""
