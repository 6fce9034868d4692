"""What every target shares about data-plane behaviour: the request, the outcome, the meaning.

Pure and exact (shares are Fractions, nothing is sampled). A target's own routing rules live in
its plugin, as the optional evaluator of the plugin contract (:class:`routers.contract.Evaluator`);
here stay the parts every evaluator and every comparison needs:

* :mod:`.request`      the request a simulation routes, and the ``'GET /api -H X:y'`` syntax;
* :mod:`.outcome`      shares per destination and mirror shares, or the status of no backend;
* :mod:`.meaning`      what a :class:`~routers.model.TrafficState` means for one request;
* :mod:`.regex`        RE2 evaluation with each data plane's anchoring;
* :mod:`.equivalence`  objects vs. meaning, scope by scope (``explain --request``, the contract
  suite's equivalence property).
"""

from routers.simulate.meaning import Intent, intended, keep_foreign, match_applies, split_outcome
from routers.simulate.outcome import Outcome, Routed, add_shares, fraction_of
from routers.simulate.regex import Dialect, regex_matches, valid_regex
from routers.simulate.request import Request, parse_request

__all__ = [
    "Dialect",
    "Intent",
    "Outcome",
    "Request",
    "Routed",
    "add_shares",
    "fraction_of",
    "intended",
    "keep_foreign",
    "match_applies",
    "parse_request",
    "regex_matches",
    "split_outcome",
    "valid_regex",
]
