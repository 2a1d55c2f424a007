"""Redirect targets keep their path but never their query string (tokens live there)."""

from workers.tools.redaction import REDACTED, redact


def test_location_query_strings_are_redacted_and_paths_kept() -> None:
    headers = [
        ("Location", "https://127.0.0.1/callback?code=abc123&state=xyz"),
        ("Refresh", "0; url=/next?token=t0k3n"),
        ("Location", "/plain/path"),
    ]
    assert redact(headers) == [
        ("Location", f"https://127.0.0.1/callback?{REDACTED}"),
        ("Refresh", f"0; url=/next?{REDACTED}"),
        ("Location", "/plain/path"),
    ]
