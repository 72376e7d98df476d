"""Example vouchnet policy plugin: serve peers we do not yet trust only during business hours.

A small office node shares documents with the whole network but does not want strangers
pulling bulk data overnight, when nobody watches the link. Outside the configured hours and
weekdays, a serve_request from a peer below `exempt_global` trust is limited to `rate`
requests/s (or denied with `outside = "deny"`); within hours the plugin abstains and the rest
of the policy decides. Trusted peers are never affected.

Use it from a policy file, with this file's folder on the node's PYTHONPATH:

    [[rule]]
    type = "plugin"
    plugin = "business_hours:BusinessHours"
    start_hour = 8
    end_hour = 18
    weekdays = [0, 1, 2, 3, 4]      # Monday = 0
    utc_offset_hours = 1            # local time = UTC + 1
    outside = "limit"
    rate = 1.0
    exempt_global = 0.01

or install it in a package that declares it in the `vouchnet.policies` entry-point group and
write `plugin = "business_hours"`. It needs nothing but the public `policy` API and is fast
(integer arithmetic on ctx.now; no datetime, no I/O), well inside the 5 ms budget.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from policy import Action, Context, Decision, Problem, RuleConfigError, Verdict

_DEFAULTS: dict[str, Any] = {"start_hour": 8, "end_hour": 18, "weekdays": [0, 1, 2, 3, 4], "utc_offset_hours": 0,
                             "outside": "limit", "rate": 1.0, "exempt_global": None}


class BusinessHours:
    name = "business_hours"
    applies_to = frozenset({Action.SERVE_REQUEST})

    def __init__(self, start_hour: int, end_hour: int, weekdays: list[int], utc_offset_hours: float,
                 outside: str, rate: float, exempt_global: float | None) -> None:
        self.start, self.end = start_hour, end_hour
        self.weekdays = frozenset(weekdays)
        self.offset = utc_offset_hours * 3600.0
        self.exempt_global = exempt_global
        hours = f"{start_hour:02d}:00-{end_hour:02d}:00"
        if outside == "deny":
            self._outside = Decision(Verdict.DENY, f"outside business hours ({hours}) for untrusted peers", self.name)
        else:
            self._outside = Decision(Verdict.LIMIT, f"outside business hours ({hours}): limited", self.name,
                                     rate=rate)

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> "BusinessHours":
        problems: list[Problem] = []
        values = dict(_DEFAULTS)
        for key, value in options.items():
            if key not in _DEFAULTS:
                problems.append(Problem((key,), "unknown key for business_hours", "one of: " + ", ".join(_DEFAULTS)))
            else:
                values[key] = value

        def integer(key: str, lo: int, hi: int) -> None:
            v = values[key]
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                problems.append(Problem((key,), f"got {v!r}", f"an integer from {lo} to {hi}"))

        def number(key: str, lo: float, hi: float, lo_open: bool = False) -> None:
            v = values[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or not lo <= v <= hi or (lo_open and v == lo):
                problems.append(Problem((key,), f"got {v!r}", f"a number from {lo:g} to {hi:g}"))

        integer("start_hour", 0, 23)
        integer("end_hour", 1, 24)
        number("utc_offset_hours", -12, 14)
        number("rate", 0, 1e9, lo_open=True)
        if values["exempt_global"] is not None:
            number("exempt_global", 0, 1)
        if values["outside"] not in ("limit", "deny"):
            problems.append(Problem(("outside",), f"got {values['outside']!r}", '"limit" or "deny"'))
        days = values["weekdays"]
        if not isinstance(days, list) or not days:
            problems.append(Problem(("weekdays",), "not a non-empty list", "a list of weekdays 0-6 (Monday = 0)"))
        else:
            for i, d in enumerate(days):
                if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= 6:
                    problems.append(Problem(("weekdays", i), f"got {d!r}", "a weekday 0-6 (Monday = 0)"))
        if not problems and values["start_hour"] >= values["end_hour"]:
            problems.append(Problem(("end_hour",), "end_hour is not after start_hour", "end_hour > start_hour"))
        if problems:
            raise RuleConfigError(problems, "business_hours")
        return cls(**values)

    def in_hours(self, now: float) -> bool:
        local = now + self.offset
        day = math.floor(local / 86400.0)
        weekday = (day + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)
        hour = int((local - day * 86400.0) // 3600)
        return weekday in self.weekdays and self.start <= hour < self.end

    def evaluate(self, ctx: Context) -> Decision | None:
        if self.exempt_global is not None and ctx.global_trust >= self.exempt_global:
            return None
        if self.in_hours(ctx.now):
            return None
        return self._outside
