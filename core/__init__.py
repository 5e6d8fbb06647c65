"""The domain of tablewatch: access events, watched tables, settings, detection.

`core` depends on nothing of the outer rooms (collectors, alerts, tui, tablewatch) and on no I/O
framework; they depend on it.
"""

from __future__ import annotations

from core.events import AccessEvent, EventKind
from core.tables import TableName, WatchedTables

__all__ = ["AccessEvent", "EventKind", "TableName", "WatchedTables"]
