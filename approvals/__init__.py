"""Signoff approval service: FastAPI app, models, decisions, CLI."""
