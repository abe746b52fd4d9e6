"""Signoff gateway plugin: policy engine, approval gate and MCP proxy hosts.

This package never imports `approvals`: it talks to the service over HTTP.
"""
