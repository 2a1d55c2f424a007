"""Per-target budgets: how hard scanfleet may push one target.

A budget caps, per target, the tasks running at once (``max_concurrency``), the
requests per second all of them together may send (``rps``), how long one task may run
(``max_runtime_s``) and how long the whole scan may take (``max_scan_wall_s``).

Where a budget comes from, in order:

1. a named profile (``default``, ``gentle``, ``fast``, or ones defined in the config file);
2. the scan's own overrides (``scanfleet scan --max-concurrency/--rps/--max-runtime``);
3. budget rules of the scope configuration, matched per target by CIDR, host name or
   ``*.domain``: they are ceilings, so the owner of a fragile host can cap what any scan
   does to it; the most specific matching rule applies.

The effective values travel with each task, and the budget class (which queue the task
goes to) follows from them, so a slow-budget target never holds back fast ones.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.errors import ConfigError
from contracts.scan import BudgetOverride

#: Tasks below this rate (requests per second) or above this runtime are "slow".
SLOW_RPS = 5.0
SLOW_RUNTIME_S = 1800
BUDGET_CLASSES = ("standard", "slow")


class Budget(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    max_concurrency: Annotated[int, Field(ge=1, le=1024)] = 4
    rps: Annotated[float, Field(gt=0, le=100000)] = 50.0
    max_runtime_s: Annotated[int, Field(ge=1, le=86400)] = 300
    max_scan_wall_s: Annotated[int, Field(ge=1, le=7 * 86400)] = 6 * 3600

    @property
    def budget_class(self) -> str:
        slow = self.rps / self.max_concurrency < SLOW_RPS or self.max_runtime_s > SLOW_RUNTIME_S
        return "slow" if slow else "standard"

    def overridden(self, override: BudgetOverride | None) -> Budget:
        if override is None:
            return self
        changes = {k: v for k, v in override.model_dump().items() if v is not None}
        return self.model_copy(update=changes)

    def capped(self, rule: BudgetRule | None) -> Budget:
        if rule is None:
            return self
        changes: dict[str, Any] = {}
        for name in ("max_concurrency", "rps", "max_runtime_s"):
            ceiling = getattr(rule, name)
            if ceiling is not None and ceiling < getattr(self, name):
                changes[name] = ceiling
        return self.model_copy(update=changes) if changes else self


BUILTIN_PROFILES = {
    "default": Budget(),
    # For fragile or production targets: one task at a time, a trickle of requests.
    "gentle": Budget(max_concurrency=1, rps=5, max_runtime_s=600),
    "fast": Budget(max_concurrency=16, rps=500, max_runtime_s=300),
}


class BudgetRule(BaseModel):
    """A ceiling for the targets ``match`` covers (CIDR, host name or ``*.domain``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    match: Annotated[str, Field(min_length=1, max_length=253)]
    max_concurrency: Annotated[int, Field(ge=1, le=1024)] | None = None
    rps: Annotated[float, Field(gt=0, le=100000)] | None = None
    max_runtime_s: Annotated[int, Field(ge=1, le=86400)] | None = None

    def specificity(self, target_key: str, addresses: Sequence[str]) -> int | None:
        """How specifically this rule matches (higher wins), or None if it does not."""
        entry = self.match.strip().lower().rstrip(".")
        if entry.startswith("*."):
            return len(entry) if target_key.endswith(entry[1:]) else None
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return 1000 if target_key == entry else None
        for address in (target_key, *addresses):
            try:
                if ipaddress.ip_address(address) in network:
                    return network.prefixlen
            except ValueError:
                continue
        return None


class ScopeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allow: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)
    budgets: list[BudgetRule] = Field(default_factory=list)

    def entries(self) -> list[str]:
        """As scope entries (deny entries prefixed with ``!``)."""
        return [*self.allow, *(f"!{d.lstrip('!')}" for d in self.deny)]


class FleetConfig(BaseModel):
    """The config file (``SCANFLEET_CONFIG``, TOML): profiles and the scope."""

    model_config = ConfigDict(extra="forbid")

    profiles: dict[str, Budget] = Field(default_factory=dict)
    scope: ScopeConfig = Field(default_factory=ScopeConfig)

    @classmethod
    def load(cls, path: Path | None) -> FleetConfig:
        if path is None:
            return cls()
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc

    def profile(self, name: str) -> Budget:
        profiles = {**BUILTIN_PROFILES, **self.profiles}
        try:
            return profiles[name]
        except KeyError:
            known = ", ".join(sorted(profiles))
            raise ConfigError(f"unknown budget profile {name!r}; known: {known}") from None


@dataclass(frozen=True)
class BudgetPolicy:
    """Resolves each target's effective budget for one scan."""

    profile: str
    base: Budget
    rules: tuple[BudgetRule, ...] = ()

    @classmethod
    def for_scan(
        cls, config: FleetConfig, profile: str, override: BudgetOverride | None
    ) -> BudgetPolicy:
        return cls(
            profile, config.profile(profile).overridden(override), tuple(config.scope.budgets)
        )

    def rule_for(self, target_key: str, addresses: Iterable[str] = ()) -> BudgetRule | None:
        addresses = tuple(addresses)
        best: tuple[int, BudgetRule] | None = None
        for rule in self.rules:
            score = rule.specificity(target_key, addresses)
            if score is not None and (best is None or score > best[0]):
                best = (score, rule)
        return best[1] if best else None

    def for_target(self, target_key: str, addresses: Iterable[str] = ()) -> Budget:
        return self.base.capped(self.rule_for(target_key, addresses))

    def describe(self) -> dict[str, Any]:
        """What goes into the scan's config hash and ``scans show``."""
        return {
            "profile": self.profile,
            **self.base.model_dump(),
            "rules": [rule.model_dump(exclude_none=True) for rule in self.rules],
        }
