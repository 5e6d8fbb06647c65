"""The Textual dashboard (the dashboard issue)."""
