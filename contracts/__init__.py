"""Message contracts of scanfleet: the canonical finding and every queue message.

Every message carries its schema identifier (``schema``); within one version only
optional fields are added, a breaking change is a new version.
"""

from contracts.enums import Confidence, EvidenceType, FindingKind, Severity, Transport
from contracts.events import FindingEvent
from contracts.finding import Asset, Evidence, Finding, ToolInfo
from contracts.fingerprint import attribute_hash, fingerprint
from contracts.scan import ScanEvent, ScanEventType, ScanRequest
from contracts.task import TaskEvent, TaskEventType, TaskMessage, TaskStatus

__all__ = [
    "Asset",
    "Confidence",
    "Evidence",
    "EvidenceType",
    "Finding",
    "FindingEvent",
    "FindingKind",
    "ScanEvent",
    "ScanEventType",
    "ScanRequest",
    "Severity",
    "TaskEvent",
    "TaskEventType",
    "TaskMessage",
    "TaskStatus",
    "ToolInfo",
    "Transport",
    "attribute_hash",
    "fingerprint",
]
