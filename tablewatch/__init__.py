"""The application: CLI, agent, HTTP API, exporter; wires core, collectors, alerts and tui."""
