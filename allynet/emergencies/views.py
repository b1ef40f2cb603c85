"""emergencies HTTP endpoints."""
