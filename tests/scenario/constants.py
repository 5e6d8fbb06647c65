"""Names and units every part of the scenario shares: the tables, the app's statements, the
attacks, and time in integer milliseconds."""

from __future__ import annotations

WATCHED = "crm.client_list"
ORDERS = "crm.orders"
ATTACKS = (
    "whole_table_select",
    "stolen_credentials_paging",
    "sequential_enumeration",
    "unusual_hour_slice",
    "audit_tamper",
    "new_principal_batches",
)
SECOND = 1000  # times are integer milliseconds inside (csvlog has millisecond precision)
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
LEARNING = 30 * HOUR  # no attack before: a 24 h learning period has passed with room to spare

APP_BY_ID = "SELECT id, name, email, phone FROM crm.client_list WHERE id = $1"
APP_BY_EMAIL = "SELECT id, name, email, phone FROM crm.client_list WHERE email = $1"
APP_ORDERS = (
    "SELECT id, total, status, created_at FROM crm.orders WHERE client_id = $1 "
    "ORDER BY created_at DESC LIMIT 20"
)
