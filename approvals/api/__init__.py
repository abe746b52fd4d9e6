"""REST routes of the approval service."""
