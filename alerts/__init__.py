"""Outbound: alert rules, sinks and the durable outbox (the alerts issue)."""
