"""Read a ``/metrics`` page the way Prometheus does (text format), as name + labels -> value."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(base_url: str) -> Samples:
    response = httpx.get(f"{base_url}/metrics", timeout=15)
    response.raise_for_status()
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The sample's value, ``None`` when the page does not have it."""
    return samples.get((name, tuple(sorted(labels.items()))))
