"""Reading ``/metrics`` the way Prometheus does, and each process's own multiprocess file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from tests.processes import ChildProcess


@dataclass(frozen=True)
class Scrape:
    """One ``/metrics`` answer: families (name -> type) and every sample's value."""

    types: dict[str, str]
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        types: dict[str, str] = {}
        samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            types[family.name] = family.type
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return cls(types=types, samples=samples)

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def series(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        return {labels: value for (sample, labels), value in self.samples.items() if sample == name}

    def sample_names(self) -> set[str]:
        return {name for name, _ in self.samples}


def scrape(base_url: str, **headers: str) -> Scrape:
    response = httpx.get(f"{base_url}/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return Scrape.parse(response.text)


@dataclass
class MetricsServer:
    web: ChildProcess
    multiproc_dir: Path

    @property
    def url(self) -> str:
        return self.web.url

    def scrape(self) -> Scrape:
        return scrape(self.url)

    def per_process(self, sample_name: str, **labels: str) -> dict[int, float]:
        """The value each process wrote for one sample in its own counter file, by pid: what
        the scrape must add up."""
        wanted = frozenset(labels.items())
        values: dict[int, float] = {}
        for path in self.multiproc_dir.glob("*.db"):
            pid = int(path.stem.rsplit("_", 1)[-1])
            for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):
                _, name, key_labels, _ = json.loads(key)
                if name == sample_name and frozenset(key_labels.items()) == wanted and value:
                    values[pid] = values.get(pid, 0.0) + value
        return values
