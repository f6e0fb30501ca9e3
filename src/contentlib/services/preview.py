"""The one place that decides which preview warnings of an update session are ignored.

`warning_behavior` (set at create or by PATCH) marks warning types as ignored or not; every warning the preview
raises is reported with `ignored` computed here, and `complete` refuses while `blocking_warnings` is not empty —
whichever protocol called it. The preview itself (OVF descriptor, manifest and certificate) is computed in
`package.py`.
"""

from __future__ import annotations

from typing import Any


def ignored_types(warning_behavior: list[dict[str, Any]] | None) -> set[str]:
    """Warning types the client chose to ignore; a later entry for the same type wins."""
    decided: dict[str, bool] = {}
    for wb in warning_behavior or []:
        decided[wb["type"]] = bool(wb["ignored"])
    return {t for t, ignored in decided.items() if ignored}


def with_ignored(warnings: list[dict[str, Any]], warning_behavior: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    ignored = ignored_types(warning_behavior)
    return [{**w, "ignored": w["type"] in ignored} for w in warnings]


def blocking_warnings(warnings: list[dict[str, Any]], warning_behavior: list[dict[str, Any]] | None) -> list[str]:
    """The warning types that fail `complete`: raised by the preview and not ignored."""
    return [w["type"] for w in with_ignored(warnings, warning_behavior) if not w["ignored"]]
