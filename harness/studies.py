"""The studies a results document covers, declared once (`studies.toml`): what `harness table`
prints with no argument, and what `harness export` commits.

    [[study]]
    title = "Ablations and the reports' systems"
    matrices = ["ablations.toml", "matrices/reports.toml"]
    store = "results/harness.sqlite"      # where `harness run --matrix M --store S` trains it
    runs = "baselines/main.json.gz"       # its runs, committed (`harness export` writes them)

A study is the configurations of its matrices, read from its store where one is here (the runs
a user trained), else from its committed runs; its sections are `harness table`'s, under the
study's title. Paths are relative to the declaring file's folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import read_toml
from harness.errors import ConfigError
from harness.registry import suggest
from harness.results import EFFECT_METRICS
from harness.stats import INTERVALS  # how an effect's interval and p are found
from harness.store import ARCHIVE_SUFFIX  # what harness.store reads as an archive

STUDIES_FILE = "studies.toml"
SORTS = ("matrix", "test_error", "validation_error", "name", "params")
SECTIONS = ("Answers", "Interactions", "Effects", "Reproductions of the reports", "Configurations", "Provenance")


@dataclass(frozen=True)
class Field:
    """One key of a [[study]] table: its type (a Python type, or a tuple of allowed values),
    whether it must be given, its default, and what it means (the README's table derives from it)."""

    kind: Any
    help: str
    required: bool = False
    default: Any = None


FIELDS: dict[str, Field] = {
    "title": Field(str, "the study's heading", required=True),
    "matrices": Field(list, "its matrix files: the study is their configurations, in their order", required=True),
    "store": Field(str, "the store `harness run` trains it into (`--store`); read where it exists here", required=True),
    "runs": Field(str, f"its committed runs, an archive (`*{ARCHIVE_SUFFIX}`) `harness export` writes from the store",
                  required=True),
    "about": Field(str, "a paragraph under the title: what the study shows", default=""),
    "level": Field((1, 2), "1: a study of its own (`#`); 2: a part of the study above (`##`)", default=1),
    "metric": Field(EFFECT_METRICS, "the error its effects are measured on (a search: a validation error)",
                    default="test_error"),
    "sort": Field(SORTS, "the configurations' order", default="matrix"),
    "equivalence": Field(float, "a margin (pp): each answer also tested for equivalence within ± it (TOST)",
                         default=None),
    "interval": Field(INTERVALS, "t, or wilcoxon: intervals that do not assume normal differences", default="t"),
    "sections": Field(list, "the sections to show (default: all), e.g. [\"Answers\", \"Effects\"]", default=None),
    "figures": Field(str, "a folder of `harness plot --out` figures: the forest plot under the answers", default=None),
    "image": Field(str, "an SVG shown under the paragraph (a figure the study's text refers to)", default=None),
    "caption": Field(str, "the image's caption", default=""),
}


@dataclass(frozen=True)
class Study:
    """A declared study; paths resolved against the declaring file's folder (`root`), shown as
    written (`relative`)."""

    title: str
    matrices: tuple[str, ...]
    store: str
    runs: str
    root: Path
    about: str = ""
    level: int = 1
    metric: str = "test_error"
    sort: str = "matrix"
    equivalence: float | None = None
    interval: str = "t"
    sections: tuple[str, ...] | None = None
    figures: str | None = None
    image: str | None = None
    caption: str = ""

    def path(self, relative: str) -> Path:
        """A path of the declaration, from the folder of its file."""
        return self.root / relative

    def source(self, committed: bool = False) -> tuple[str, bool]:
        """The result set to read (as written in the file) and whether it is the committed one:
        the store where one is here (the runs trained in this clone), unless `committed`."""
        if not committed and self.path(self.store).is_file():
            return self.store, False
        return self.runs, True


def _checked(value: Any, name: str, spec: Field, where: str) -> Any:
    if isinstance(spec.kind, tuple):
        if value not in spec.kind:
            choices = ", ".join(map(repr, spec.kind))
            raise ConfigError(f"{where}: {name} = {value!r} is not one of {choices}{suggest(value, spec.kind)}")
        return value
    if spec.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, spec.kind) or isinstance(value, bool):
        raise ConfigError(f"{where}: {name} must be a {spec.kind.__name__}, got {value!r}")
    if spec.kind is float and not value > 0:
        raise ConfigError(f"{where}: {name} must be above 0, got {value!r}")
    if spec.kind is list:
        if name == "sections":
            unknown = [item for item in value if item not in SECTIONS]
            if not value or unknown:
                raise ConfigError(f"{where}: sections = {value!r}: name some of {', '.join(SECTIONS)}"
                                  + (suggest(unknown[0], SECTIONS) if unknown else ""))
            return tuple(value)
        if not value or not all(isinstance(item, str) and item for item in value):
            raise ConfigError(f"{where}: {name} must list matrix files, e.g. {name} = [\"ablations.toml\"]")
        return tuple(value)
    if spec.kind is str and name != "about" and name != "caption" and not value.strip():
        raise ConfigError(f"{where}: {name} is empty")
    return value


def load_studies(path: str | Path = STUDIES_FILE) -> list[Study]:
    """The studies `path` declares, in order; ConfigError in one line for a file that cannot be
    read, an unknown or missing key, a value of the wrong kind, or a runs file that is no archive."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise ConfigError(f"{where}: no such file; declare the studies there ([[study]] tables) or pass --store")
    document = read_toml(path, "the studies file")
    unknown = [key for key in document if key != "study"]
    if unknown:
        raise ConfigError(f"{where}: unknown section [{unknown[0]}]{suggest(unknown[0], ['study'])}; "
                          "a studies file holds [[study]] tables")
    tables = document.get("study")
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{where}: no [[study]] table; declare at least one (title, matrices, store, runs)")
    studies = []
    for index, table in enumerate(tables, start=1):
        at = f"{where} [[study]] {index}"
        for key in table:
            if key not in FIELDS:
                raise ConfigError(f"{at}: unknown key {key!r}{suggest(key, FIELDS)}; keys are {', '.join(FIELDS)}")
        values = {}
        for name, spec in FIELDS.items():
            if name not in table:
                if spec.required:
                    raise ConfigError(f"{at}: {name} is missing ({spec.help})")
                values[name] = spec.default
                continue
            values[name] = _checked(table[name], name, spec, at)
        if not values["runs"].endswith(ARCHIVE_SUFFIX):
            raise ConfigError(f"{at}: runs = {values['runs']!r} must name an archive ending in {ARCHIVE_SUFFIX}")
        if values["caption"] and not values["image"]:
            raise ConfigError(f"{at}: a caption without an image; give image = \"docs/....svg\" or drop the caption")
        if index == 1 and values["level"] != 1:
            raise ConfigError(f"{at}: the first study cannot be a part (level = 2) of one above it")
        studies.append(Study(root=path.resolve().parent, **values))
    titles = [study.title for study in studies]
    twice = next((title for title in titles if titles.count(title) > 1), None)
    if twice:
        raise ConfigError(f"{where}: two studies are titled {twice!r}; each title heads its own section")
    return studies
