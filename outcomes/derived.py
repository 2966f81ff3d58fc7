"""The derived tables (DueWindow, AwaitingProcedure, AnalysisRow) during a bulk write.

The statement triggers refresh a patient's derived rows in the statement that changes her records
(migrations 0005-0009). A bulk writer that sends one chunk as several statements runs DEFER before
them and REFRESH after them, in the same transaction: the triggers then note the patients and REFRESH
computes their rows once. Between the two, the chunk's derived rows are stale; REFRESH must follow in
the same transaction (the setting is transaction-local, so a rollback or commit also ends it).
PostgreSQL only (SQLite, the local demo, has no triggers: its worklist and dashboard compute in Python).
"""

DEFER = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS outcomes_deferred_refresh (patient_id bigint) ON COMMIT DROP;"
    " SELECT set_config('outcomes.defer_refresh', 'on', true)"
)
REFRESH = (
    "SELECT set_config('outcomes.defer_refresh', 'off', true);"
    " SELECT outcomes_refresh_now(array_agg(DISTINCT patient_id)) FROM pg_temp.outcomes_deferred_refresh"
    " HAVING count(*) > 0;"
    " TRUNCATE pg_temp.outcomes_deferred_refresh"
)
