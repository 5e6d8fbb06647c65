"""Inbound: sources that turn database audit output into `core.AccessEvent`s."""
