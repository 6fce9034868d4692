from __future__ import annotations

import pytest

from routers.errors import PluginError
from routers.registry import Registry
from tests.conftest import entry

CM = "routers_example_configmap:ConfigMapPlugin"


def reg(*eps: object, disabled: tuple[str, ...] = ()) -> Registry:
    return Registry(lambda: list(eps), disabled=disabled)  # type: ignore[arg-type]


def test_discovery_does_not_import(thirdparty_path: None) -> None:
    r = reg(entry("configmap", CM), entry("broken", "no_such_module_xyz:Plugin"))
    infos = {i.name: i for i in r.discover()}
    assert infos["broken"].status == "available"  # not imported yet
    assert infos["configmap"].distribution == "some-dist"


def test_broken_plugin_fails_only_its_own_commands(thirdparty_path: None) -> None:
    r = reg(entry("configmap", CM), entry("broken", "no_such_module_xyz:Plugin", "evil-dist"))
    assert r.load("configmap").name == "configmap"
    with pytest.raises(
        PluginError,
        match=r"plugin 'broken' \(from evil-dist\): import of .* failed: ModuleNotFoundError",
    ):
        r.load("broken")
    status = {i.name: i.status for i in r.discover()}
    assert status == {"broken": "failed", "configmap": "loaded"}
    with pytest.raises(PluginError):  # the failure is cached, not retried
        r.load("broken")


def test_duplicate_names_name_both_distributions(thirdparty_path: None) -> None:
    r = reg(entry("configmap", CM, "dist-a", "1"), entry("configmap", CM, "dist-b", "2"))
    with pytest.raises(PluginError, match="dist-a 1 .* and dist-b 2"):
        r.load("configmap")
    assert {i.status for i in r.discover()} == {"conflict"}


def test_disabled(thirdparty_path: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTERS_DISABLE_PLUGINS", "configmap, other")
    r = Registry(lambda: [entry("configmap", CM)])  # type: ignore[list-item]
    with pytest.raises(PluginError, match="disabled by ROUTERS_DISABLE_PLUGINS"):
        r.load("configmap")


def test_unknown_plugin_lists_installed(thirdparty_path: None) -> None:
    with pytest.raises(PluginError, match=r"installed: configmap"):
        reg(entry("configmap", CM)).load("nope")


class NoPlan:
    name = "noplan"
    api_version = 1
    crds = ()

    def capabilities(self, config=None, facts=None):  # type: ignore[no-untyped-def]
        raise NotImplementedError


class WrongVersion(NoPlan):
    name = "wrongversion"
    api_version = 99

    def parse_config(self, section, routing): ...  # type: ignore[no-untyped-def]
    def targets(self, config, live): ...  # type: ignore[no-untyped-def]
    def plan(self, config, live, desired, facts): ...  # type: ignore[no-untyped-def]
    def observe(self, config, live, facts): ...  # type: ignore[no-untyped-def]
    def permissions(self, config): ...  # type: ignore[no-untyped-def]


class Misnamed(WrongVersion):
    name = "other"
    api_version = 1


def test_contract_checked_at_load() -> None:
    r = reg(
        entry("noplan", "tests.unit.test_registry:NoPlan"),
        entry("wrongversion", "tests.unit.test_registry:WrongVersion"),
        entry("misnamed", "tests.unit.test_registry:Misnamed"),
    )
    with pytest.raises(
        PluginError, match=r"missing: parse_config, targets, plan, observe, permissions"
    ):
        r.load("noplan")
    with pytest.raises(PluginError, match="plugin API version 99"):
        r.load("wrongversion")
    with pytest.raises(PluginError, match="declares name 'other'"):
        r.load("misnamed")


def test_constructor_failure_is_isolated() -> None:
    r = reg(entry("boom", "tests.unit.test_registry:Boom"))
    with pytest.raises(PluginError, match="constructing .* failed: RuntimeError: no"):
        r.load("boom")


class Boom:
    def __init__(self) -> None:
        raise RuntimeError("no")
