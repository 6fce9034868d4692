"""Kubernetes label selectors (``metav1.LabelSelector``) as a validated input.

Argo's Gateway API plugin selects routes by labels (``httpRouteSelector`` and friends); the same
selector is evaluated offline against manifest labels (:meth:`LabelSelector.matches`) and sent to
the API server as a ``labelSelector`` query (:meth:`LabelSelector.query`), so both must agree
and no value may change the query's meaning: keys and values are checked against the label
syntax, which has no room for ``,``, ``=``, ``!``, parentheses or spaces.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import Field, model_validator

from routers.model._base import Model
from routers.model._validators import LabelKey, LabelValue

__all__ = ["LabelSelector", "SelectorRequirement"]

Key = LabelKey
Value = LabelValue


class SelectorRequirement(Model):
    key: Key
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: Annotated[tuple[Value, ...], Field(strict=False)] = ()

    @model_validator(mode="after")
    def _values_fit_the_operator(self) -> SelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs at least one value")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        if self.operator == "In":
            return labels.get(self.key) in self.values
        return labels.get(self.key) not in self.values  # NotIn: also true without the label

    def query(self) -> str:
        if self.operator == "Exists":
            return self.key
        if self.operator == "DoesNotExist":
            return f"!{self.key}"
        op = "in" if self.operator == "In" else "notin"
        return f"{self.key} {op} ({','.join(sorted(self.values))})"


class LabelSelector(Model):
    """``matchLabels`` and ``matchExpressions``, ANDed; an empty selector selects everything."""

    match_labels: Annotated[dict[Key, Value], Field(strict=False)] = Field(default_factory=dict)
    match_expressions: Annotated[tuple[SelectorRequirement, ...], Field(strict=False)] = ()

    def __hash__(self) -> int:
        return hash((tuple(sorted(self.match_labels.items())), self.match_expressions))

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels.items()) and all(
            r.matches(labels) for r in self.match_expressions
        )

    def query(self) -> str:
        """The ``labelSelector`` query parameter of a LIST request (API server syntax)."""
        parts = [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        parts += [r.query() for r in self.match_expressions]
        return ",".join(parts)

    def describe(self) -> str:
        return self.query() or "(everything)"
