"""Finding plugin rule classes: by entry-point name in the `vouchnet.policies` group, or `module:Class`.

A package registers a rule in its pyproject.toml:

    [project.entry-points."vouchnet.policies"]
    business_hours = "mypkg.rules:BusinessHours"

and a policy file uses it with `type = "plugin"`, `plugin = "business_hours"`. A value with a
colon, `plugin = "mypkg.rules:BusinessHours"`, imports the module directly (it must be
importable from the node's sys.path). Either way the code runs inside the node with its
privileges: only install plugins you would install as part of the node itself.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import re
from typing import Any

from policy.core import Action

__all__ = ["ENTRY_POINT_GROUP", "PluginError", "available_plugins", "check_plugin_class", "resolve_plugin"]

ENTRY_POINT_GROUP = "vouchnet.policies"
_REF = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


class PluginError(Exception):
    """A plugin could not be found, imported, or does not implement the rule interface."""


def available_plugins() -> dict[str, str]:
    """Installed plugin names -> their `module:attr` value, from the entry-point group."""
    try:
        eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception:  # noqa: BLE001 - broken distribution metadata must not break validation
        return {}
    return {ep.name: ep.value for ep in eps}


def _import_ref(ref: str) -> Any:
    module_name, _, attr = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - the import runs the plugin's top-level code
        raise PluginError(f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise PluginError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


def resolve_plugin(ref: str) -> type:
    """The plugin class for an entry-point name or a `module:Class` reference; PluginError if none."""
    if not isinstance(ref, str):
        raise PluginError(f"a plugin reference is a string, got {type(ref).__name__}")
    if ":" in ref:
        if not _REF.fullmatch(ref):
            raise PluginError(f"{ref[:100]!r} is not a module:Class reference")
        cls = _import_ref(ref)
    else:
        if not _NAME.fullmatch(ref):
            raise PluginError(f"{ref[:100]!r} is not a plugin name")
        try:
            eps = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == ref]
        except Exception as exc:  # noqa: BLE001
            raise PluginError(f"cannot read installed entry points: {exc}") from None
        if not eps:
            known = ", ".join(sorted(available_plugins())) or "none installed"
            raise PluginError(f"no plugin named {ref!r} in entry-point group {ENTRY_POINT_GROUP} (installed: {known})")
        try:
            cls = eps[0].load()
        except Exception as exc:  # noqa: BLE001
            raise PluginError(f"cannot load plugin {ref!r} ({eps[0].value}): {type(exc).__name__}: {exc}") from None
    check_plugin_class(cls, ref)
    return cls


def check_plugin_class(cls: Any, ref: str = "") -> None:
    """PluginError unless cls looks like a rule class: from_config, evaluate, a valid applies_to."""
    label = ref or getattr(cls, "__name__", repr(cls))
    if not isinstance(cls, type):
        raise PluginError(f"{label} is not a class")
    if not callable(getattr(cls, "from_config", None)):
        raise PluginError(f"{label} has no from_config(options) classmethod")
    if not callable(getattr(cls, "evaluate", None)):
        raise PluginError(f"{label} has no evaluate(ctx) method")


def plugin_actions(obj: Any, label: str) -> frozenset[Action]:
    """The actions a plugin instance (or class) declares in `applies_to`; PluginError if malformed."""
    raw = getattr(obj, "applies_to", None)
    if isinstance(raw, (str, bytes)) or raw is None:
        raise PluginError(f"{label}: applies_to must be a set of actions, got {type(raw).__name__}")
    try:
        items = list(raw)
    except TypeError:
        raise PluginError(f"{label}: applies_to must be a set of actions, got {type(raw).__name__}") from None
    out = set()
    for a in items:
        try:
            out.add(Action(a))
        except (ValueError, TypeError):
            raise PluginError(f"{label}: applies_to names an unknown action {a!r}") from None
    return frozenset(out)
