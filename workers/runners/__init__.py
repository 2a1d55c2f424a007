"""Runners execute a tool invocation: subprocess today; container and sandbox next."""
