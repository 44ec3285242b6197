"""Which metric names a PromQL expression reads, and which names arcstream really exposes.

Alert rules and dashboard panels are only checked by Prometheus and Grafana at
run time, where a misspelt or renamed series silently matches nothing: an
alert that can never fire, an empty panel. The tests compare the names the
expressions use with the names the code defines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from prometheus_client.metrics_core import Metric

#: Series rules and panels may use before the code defines them. Once the code defines one, the tests fail
#: until it is removed from here, so this list cannot go stale.
PENDING_METRICS: frozenset[str] = frozenset()
#: Series Prometheus itself adds to every scrape target.
SCRAPE_METRICS = frozenset({"up"})

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_NAME = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"inf", "nan", "Inf", "NaN", "atan2"}
)
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "gauge": ("",),
}


def metric_names(expr: str) -> set[str]:
    """Metric names in ``expr``: identifiers that are no function, keyword, label or Grafana variable."""
    text = _STRING.sub(" ", expr)
    text = _VARIABLE.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    return {name for name in _NAME.findall(text) if name not in _KEYWORDS}


def sample_names(families: Iterable[Metric]) -> set[str]:
    """The names the families' samples carry in the text format (``_total``, ``_bucket``, ...)."""
    names = set()
    for family in families:
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def exposed_metric_names() -> set[str]:
    """Every series name an arcstream process can expose, including capture health."""
    import services.builder.metrics  # noqa: F401  (registers the builder's series)
    from services.common.metrics import REGISTRY
    from services.extractor.cdc.capture.health import LastEvent, SlotHealthCollector

    families = [*REGISTRY.collect(), *SlotHealthCollector("", "slot").describe(), *LastEvent().collect()]
    return sample_names(families)
