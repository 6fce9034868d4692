"""The config glue plugins share: one place for the routing facts every section needs."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from routers.errors import ConfigError
from routers.model import RoutingConfig
from routers.model._base import Model
from routers.model._validators import ObjectName
from routers.planning.objects import ObjectRef
from routers.planning.sections import Common, Kind, SectionConfig, parse_section

ROUTING = RoutingConfig.parse(
    {
        "stableService": "web-stable",
        "canaryService": "web-canary",
        "managedRoutes": [{"name": "b"}, {"name": "a"}],
        "x": {},
    }
)


class Section(Model):
    target_name: ObjectName
    weight_total: int = 100


def test_routing_facts_in_one_place() -> None:
    assert Common.of(ROUTING) == Common(
        "default", "web-stable", "web-canary", ("b", "a"), "default/web-canary"
    )
    namespaced = ROUTING.model_copy(update={"namespace": "shop"})
    assert Common.of(namespaced).namespace == "shop"
    assert Common.of(namespaced).owner == "shop/web-canary"  # RoutingConfig.owner_key


def test_parse_section_validates_with_section_relative_paths() -> None:
    config = parse_section(Section, {"targetName": "web"}, ROUTING)
    assert (config.section.target_name, config.section.weight_total) == ("web", 100)
    assert (config.namespace, config.stable, config.canary) == (
        "default",
        "web-stable",
        "web-canary",
    )
    with pytest.raises(ConfigError) as exc:
        parse_section(Section, {"targetName": "Bad_Name", "extra": 1}, ROUTING)
    assert {p.path for p in exc.value.problems} == {"targetName", "extra"}


def test_subclasses_add_derived_fields_and_kinds_name_objects() -> None:
    kind = Kind("example.com", "Thing", "v1")

    @dataclass(frozen=True, kw_only=True)
    class Config(SectionConfig[Section]):
        @property
        def target(self) -> ObjectRef:
            return kind.ref(self.namespace, self.section.target_name)

    config = Config.build(Section.parse({"targetName": "web"}), ROUTING)
    assert config.target == ObjectRef("example.com", "Thing", "default", "web")
    assert config.target.version == "v1"
