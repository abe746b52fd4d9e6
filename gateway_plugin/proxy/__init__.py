"""MCP proxy hosts for the Signoff interceptor."""
