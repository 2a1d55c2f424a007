"""Queries of the findings aggregate (findings, their assets and observations)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from contracts.enums import Severity
from storage.models import Asset, Finding, Observation


@dataclass(frozen=True)
class FindingFilter:
    severities: Sequence[Severity] = ()
    kinds: Sequence[str] = ()
    statuses: Sequence[str] = ()
    asset: str | None = None
    scan_id: str | None = None


@dataclass(frozen=True)
class FindingRow:
    id: int
    fingerprint: str
    kind: str
    rule_id: str
    title: str
    severity: str
    confidence: str
    status: str
    asset: str
    transport: str | None
    port: int | None
    url: str | None
    attributes: dict[str, Any]
    first_seen: datetime
    last_seen: datetime
    observations: int

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["first_seen"] = self.first_seen.isoformat()
        data["last_seen"] = self.last_seen.isoformat()
        return data


SelectT = TypeVar("SelectT", bound=Select)  # type: ignore[type-arg]


def _filtered(statement: SelectT, flt: FindingFilter) -> SelectT:
    if flt.severities:
        statement = statement.where(Finding.severity.in_([s.value for s in flt.severities]))
    if flt.kinds:
        statement = statement.where(Finding.kind.in_(list(flt.kinds)))
    if flt.statuses:
        statement = statement.where(Finding.status.in_(list(flt.statuses)))
    if flt.asset:
        statement = statement.where(Asset.key == flt.asset.lower())
    if flt.scan_id:
        scan_id = uuid.UUID(str(flt.scan_id))
        seen_in_scan = select(Observation.finding_id).where(Observation.scan_id == scan_id)
        statement = statement.where(Finding.id.in_(seen_in_scan))
    return statement


def list_findings(
    session: Session, flt: FindingFilter = FindingFilter(), *, limit: int = 100, offset: int = 0
) -> list[FindingRow]:
    observation_count = (
        select(func.count())
        .where(Observation.finding_id == Finding.id)
        .correlate(Finding)
        .scalar_subquery()
    )
    statement = _filtered(
        select(Finding, Asset.key, observation_count).join(Asset, Asset.id == Finding.asset_id),
        flt,
    ).order_by(Finding.last_seen.desc(), Finding.id.desc())
    rows = session.execute(statement.limit(limit).offset(offset)).all()
    return [
        FindingRow(
            id=f.id,
            fingerprint=f.fingerprint,
            kind=f.kind,
            rule_id=f.rule_id,
            title=f.title,
            severity=f.severity,
            confidence=f.confidence,
            status=f.status,
            asset=asset_key,
            transport=f.transport,
            port=f.port,
            url=f.url,
            attributes=f.attributes,
            first_seen=f.first_seen,
            last_seen=f.last_seen,
            observations=int(count),
        )
        for f, asset_key, count in rows
    ]


@dataclass(frozen=True)
class FindingCounts:
    total: int
    by_severity: dict[str, int]
    by_status: dict[str, int]
    observations: int

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def count_findings(session: Session, flt: FindingFilter = FindingFilter()) -> FindingCounts:
    base = _filtered(
        select(Finding.severity, Finding.status, func.count()).join(
            Asset, Asset.id == Finding.asset_id
        ),
        flt,
    ).group_by(Finding.severity, Finding.status)
    by_severity = {s.value: 0 for s in Severity}
    by_status: dict[str, int] = {}
    total = 0
    for severity, status, count in session.execute(base).all():
        by_severity[severity] = by_severity.get(severity, 0) + count
        by_status[status] = by_status.get(status, 0) + count
        total += count
    observations = session.execute(select(func.count()).select_from(Observation)).scalar_one()
    return FindingCounts(total, by_severity, by_status, int(observations))
