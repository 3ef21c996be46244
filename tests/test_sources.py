"""SOURCES.md: every fact id the project cites is defined there, and nothing cites outside it.

A clone of the repository must be able to check every citation: scenarios, catalogues, code,
the README and the notebooks cite facts as ``[S:id]``, each id an entry of ``SOURCES.md`` with
a publication, a date (or "undated") and a URL. Citations of the compilation the facts were
first gathered in (``FACTS.md``, its section ids ``F0``..``F9`` and its tables under
``../shared/data/``) are not allowed: that folder is not part of the repository. Reading the
public traces from ``../shared/data/traces`` (tests, ``gridsim fit-trace``) is not a citation
and stays allowed.

The checks are plain functions, tested first on small hand-made inputs (so that a checker that
finds nothing cannot pass), then run on the repository.
"""

from __future__ import annotations

import csv
import io
import re
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES_MD = ROOT / "SOURCES.md"
CATALOG_DIR = ROOT / "gridsim" / "catalog" / "data"

ID_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
ENTRY_RE = re.compile(r"^### (\S+)\s*$")
FIELD_RE = re.compile(r"^- ([A-Z][A-Za-z]+): ?(.*)$")
CITE_RE = re.compile(r"\[S:([^\]]*)\]")
DATE_RE = re.compile(r"^(?:(?:19|20)\d\d(?:-\d\d){0,2}\b|undated\b)")
URL_RE = re.compile(r"https?://\S+")
# The placeholder a text may use to explain the citation form itself ("cite as [S:id]").
PLACEHOLDER_IDS = {"id"}
REQUIRED_FIELDS = ("Figures", "Publication", "Date", "URL")

# Citations of the outside compilation. ``shared/data/traces`` (the reading path of the public
# traces) is allowed; any other file or folder under ``shared/data/`` is a citation of it.
FORBIDDEN = (
    ("FACTS.md", re.compile(r"FACTS(?:\.md)?\b")),
    ("a table under ../shared/data/", re.compile(r"shared/data/(?!traces\b)")),
    ("a bare F<digit> fact id", re.compile(r"(?<![\w#/.-])F[0-9](?![\w])")),
)
# Where citations may appear: scenarios, the package (code, catalogues), README, notebooks.
SCANNED = ("scenarios", "gridsim", "README.md", "notebooks")
SCANNED_SUFFIXES = {".py", ".csv", ".yaml", ".yml", ".md"}
# CSV columns that carry citations (the values are never scanned: a value is not a citation).
CSV_TEXT_COLUMNS = ("source", "sources", "note", "notes", "price_source", "spec_source")


@dataclass(frozen=True)
class Entry:
    """One entry of SOURCES.md: its id, the line of its heading and its fields."""

    id: str
    line: int
    fields: dict[str, str]


@dataclass(frozen=True)
class Text:
    """A piece of citable text in a file, with the line it starts on."""

    path: str
    line: int
    text: str


def parse_sources(markdown: str) -> list[Entry]:
    """The entries of a SOURCES.md text: '### id' headings, then '- Field: value' lines.

    A field's value may continue on lines indented under it; a heading that is not an entry
    (a theme, '## ...') ends the entry before it.
    """
    entries: list[Entry] = []
    current: tuple[str, int, dict[str, str]] | None = None
    field: str | None = None
    for number, raw in enumerate(markdown.splitlines(), start=1):
        heading = ENTRY_RE.match(raw)
        if heading or raw.startswith("#"):
            if current is not None:
                entries.append(Entry(current[0], current[1], current[2]))
            current = (heading.group(1), number, {}) if heading else None
            field = None
            continue
        if current is None:
            continue
        match = FIELD_RE.match(raw)
        if match:
            field = match.group(1)
            current[2][field] = match.group(2).strip()
        elif field is not None and raw.startswith("  ") and raw.strip():
            current[2][field] = f"{current[2][field]} {raw.strip()}".strip()
        elif not raw.strip():
            field = None
    if current is not None:
        entries.append(Entry(current[0], current[1], current[2]))
    return entries


def entry_problems(entries: list[Entry]) -> list[str]:
    """What is wrong with the entries: ids, required fields, dates and URLs."""
    problems: list[str] = []
    seen: dict[str, int] = {}
    for entry in entries:
        where = f"SOURCES.md:{entry.line} {entry.id}"
        if not ID_RE.fullmatch(entry.id):
            problems.append(f"{where}: id is not kebab-case (a-z, 0-9 and single hyphens)")
        if entry.id in seen:
            problems.append(f"{where}: id defined twice (first at line {seen[entry.id]})")
        seen.setdefault(entry.id, entry.line)
        for name in REQUIRED_FIELDS:
            if not entry.fields.get(name):
                problems.append(f"{where}: no '- {name}:' line")
        date = entry.fields.get("Date", "")
        if date and not DATE_RE.match(date):
            problems.append(f"{where}: Date {date!r} is neither YYYY[-MM[-DD]] nor 'undated'")
        url = entry.fields.get("URL", "")
        weak = entry.fields.get("Confidence", "").startswith("weak")
        # "none" is accepted only for a weak entry that says why (its origin was not kept)
        excused = url.startswith("none (") and weak
        if url and not URL_RE.search(url) and not excused:
            problems.append(f"{where}: URL {url!r} has no http(s) address")
    return problems


def _python_texts(path: str, source: str) -> Iterator[Text]:
    """Comments and string literals of a Python file (where code cites facts)."""
    kinds = {tokenize.COMMENT, tokenize.STRING}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in kinds:
            yield Text(path, token.start[0], token.string)


def _csv_texts(path: str, source: str) -> Iterator[Text]:
    """The source and note columns of a catalogue CSV (its values are not citations)."""
    reader = csv.DictReader(io.StringIO(source))
    for row in reader:
        for column in CSV_TEXT_COLUMNS:
            value = row.get(column)
            if value:
                # line_num is the line the row ends on; rows here hold no line breaks
                yield Text(path, reader.line_num, value)


def _line_texts(path: str, source: str) -> Iterator[Text]:
    """Every line of a YAML or Markdown file."""
    for number, line in enumerate(source.splitlines(), start=1):
        yield Text(path, number, line)


def texts_of(path: Path, root: Path) -> Iterator[Text]:
    """The citable text of one file, by its kind."""
    name = path.relative_to(root).as_posix()
    source = path.read_text(encoding="utf-8")
    if path.suffix == ".py":
        yield from _python_texts(name, source)
    elif path.suffix == ".csv":
        yield from _csv_texts(name, source)
    else:
        yield from _line_texts(name, source)


def scanned_files(root: Path) -> list[Path]:
    """The files whose citations are checked, in a fixed order."""
    files: list[Path] = []
    for top in SCANNED:
        path = root / top
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file() and p.suffix in SCANNED_SUFFIXES and "__pycache__" not in p.parts
            )
    return files


def citations(texts: list[Text]) -> list[tuple[Text, str]]:
    """Every ``[S:...]`` in the texts, with what it holds (an id, or something malformed)."""
    found: list[tuple[Text, str]] = []
    for text in texts:
        for match in CITE_RE.finditer(text.text):
            line = text.line + text.text[: match.start()].count("\n")
            found.append((Text(text.path, line, text.text), match.group(1)))
    return found


def undefined_citations(texts: list[Text], defined: set[str]) -> list[str]:
    """'file:line: [S:x]' for each citation whose id is malformed or not defined."""
    problems: list[str] = []
    for text, cited in citations(texts):
        if cited in PLACEHOLDER_IDS:
            continue
        if not ID_RE.fullmatch(cited):
            problems.append(f"{text.path}:{text.line}: [S:{cited}] is not one kebab-case id")
        elif cited not in defined:
            problems.append(f"{text.path}:{text.line}: [S:{cited}] is not defined in SOURCES.md")
    return problems


def outside_citations(texts: list[Text]) -> list[str]:
    """'file:line: ...' for each citation of FACTS.md, its tables or its F-section ids."""
    problems: list[str] = []
    for text in texts:
        for label, pattern in FORBIDDEN:
            for match in pattern.finditer(text.text):
                line = text.line + text.text[: match.start()].count("\n")
                problems.append(f"{text.path}:{line}: cites {label}: {match.group(0)!r}")
    return problems


def _repository_texts() -> list[Text]:
    return [text for path in scanned_files(ROOT) for text in texts_of(path, ROOT)]


# --- the checkers on hand-made inputs -------------------------------------------------------

GOOD_ENTRY = """# Sources

## Demand

### nda-tokens-2026

- Figures: 140 trillion tokens a day,
  in March 2026.
- Publication: a speech, reported.
- Date: 2026-03
- URL: https://example.org/a
- Confidence: secondary

### guangdong-tou-2024

- Figures: 0.655 CNY/kWh.
- Publication: an unnamed file.
- Date: undated
- URL: none (not recorded)
- Confidence: weak

## Fleet
"""


def test_parse_sources_reads_ids_fields_and_continuation_lines() -> None:
    entries = parse_sources(GOOD_ENTRY)
    assert [e.id for e in entries] == ["nda-tokens-2026", "guangdong-tou-2024"]
    assert entries[0].line == 5
    assert entries[0].fields["Figures"] == "140 trillion tokens a day, in March 2026."
    assert entries[0].fields["URL"] == "https://example.org/a"
    assert entries[1].fields["Date"] == "undated"
    assert entry_problems(entries) == []


def test_entry_problems_name_each_missing_or_malformed_field() -> None:
    text = """### Bad_Id

- Figures: x
- Date: March 2026
- URL: example.org
- Confidence: secondary

### nda-tokens-2026

- Figures: y
- Publication: p
- Date: 2026
- URL: none (lost)
- Confidence: secondary

### nda-tokens-2026

- Figures: z
- Publication: p
- Date: 2026
- URL: https://example.org
"""
    problems = entry_problems(parse_sources(text))
    assert problems == [
        "SOURCES.md:1 Bad_Id: id is not kebab-case (a-z, 0-9 and single hyphens)",
        "SOURCES.md:1 Bad_Id: no '- Publication:' line",
        "SOURCES.md:1 Bad_Id: Date 'March 2026' is neither YYYY[-MM[-DD]] nor 'undated'",
        "SOURCES.md:1 Bad_Id: URL 'example.org' has no http(s) address",
        # "none" is only for weak entries
        "SOURCES.md:8 nda-tokens-2026: URL 'none (lost)' has no http(s) address",
        "SOURCES.md:16 nda-tokens-2026: id defined twice (first at line 8)",
    ]


def test_citation_checks_find_undefined_ids_and_outside_citations(tmp_path: Path) -> None:
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "a.yaml").write_text(
        "name: a\n"
        "# 140e12 [S:nda-tokens-2026], growth [S:nope-2025]\n"
        "# PUE (F1), price F3. FP16 and #F1F1F1 are not fact ids; [S:a, b] is malformed\n"
        "# see ../shared/data/FACTS.md and ../shared/data/hubs.csv; ../shared/data/traces is ok\n",
        encoding="utf-8",
    )
    (tmp_path / "gridsim").mkdir()
    (tmp_path / "gridsim" / "m.py").write_text(
        'X = 1  # [S:nda-tokens-2026]\nY = "FACTS section 9 [S:missing-one]"\nF1 = 2\n',
        encoding="utf-8",
    )
    (tmp_path / "gridsim" / "c.csv").write_text(
        "id,value,source\nx,F1,[S:gone]\ny,2,ok F2\n", encoding="utf-8"
    )
    texts = [t for p in scanned_files(tmp_path) for t in texts_of(p, tmp_path)]
    # files in SCANNED order (scenarios before gridsim), then by path and line
    assert undefined_citations(texts, {"nda-tokens-2026"}) == [
        "scenarios/a.yaml:2: [S:nope-2025] is not defined in SOURCES.md",
        "scenarios/a.yaml:3: [S:a, b] is not one kebab-case id",
        "gridsim/c.csv:2: [S:gone] is not defined in SOURCES.md",
        "gridsim/m.py:2: [S:missing-one] is not defined in SOURCES.md",
    ]
    # the CSV's value column (F1) and the Python name F1 are not citations
    assert outside_citations(texts) == [
        "scenarios/a.yaml:3: cites a bare F<digit> fact id: 'F1'",
        "scenarios/a.yaml:3: cites a bare F<digit> fact id: 'F3'",
        "scenarios/a.yaml:4: cites FACTS.md: 'FACTS.md'",
        "scenarios/a.yaml:4: cites a table under ../shared/data/: 'shared/data/'",
        "scenarios/a.yaml:4: cites a table under ../shared/data/: 'shared/data/'",
        "gridsim/c.csv:3: cites a bare F<digit> fact id: 'F2'",
        "gridsim/m.py:2: cites FACTS.md: 'FACTS'",
    ]


# --- the repository --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def entries() -> list[Entry]:
    assert SOURCES_MD.is_file(), "SOURCES.md is missing at the repository root"
    return parse_sources(SOURCES_MD.read_text(encoding="utf-8"))


def test_sources_entries_are_complete(entries: list[Entry]) -> None:
    assert len(entries) >= 50, f"SOURCES.md parses to only {len(entries)} entries"
    problems = entry_problems(entries)
    assert not problems, "SOURCES.md entries:\n" + "\n".join(problems)


def test_every_cited_id_is_defined(entries: list[Entry]) -> None:
    texts = _repository_texts()
    assert citations(texts), "no [S:id] citation found: the scan reads nothing"
    problems = undefined_citations(texts, {e.id for e in entries})
    assert not problems, "citations not in SOURCES.md:\n" + "\n".join(problems)


def test_nothing_cites_the_outside_compilation() -> None:
    problems = outside_citations(_repository_texts())
    assert not problems, (
        "cite SOURCES.md entries as [S:id] instead of the compilation outside the repository:\n"
        + "\n".join(problems)
    )


def test_catalogue_rows_name_their_source() -> None:
    empty: list[str] = []
    checked = 0
    for path in sorted(CATALOG_DIR.glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            if "source" not in (reader.fieldnames or []):
                continue
            for row in reader:
                checked += 1
                if not (row["source"] or "").strip():
                    empty.append(f"{path.name}:{reader.line_num}: empty source")
    assert checked > 500, f"only {checked} catalogue rows with a source column were read"
    assert not empty, "\n".join(empty)
