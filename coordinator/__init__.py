"""The ``scanfleet`` CLI, scan planning, scope checks, dispatch, task lifecycle, reports."""
