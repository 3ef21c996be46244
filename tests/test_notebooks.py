"""The analyst notebooks (jupytext percent scripts in notebooks/) execute end to end, and their
prose states no result it does not compute.

Each is converted with jupytext and run by nbclient on the ``python3`` kernel of this Python
(ipykernel installs its kernelspec into the environment; jupyter_client starts it with this
interpreter), in quick mode (``GRIDSIM_QUICK=1``: short horizons) with notebooks/ as the working
directory.

Stated numbers (issue 14, item 9): every number written in a markdown cell (figures, percentages,
number words, dates such as "27 April" or "mid-March") must be an *input*: it appears in the
notebook's code cells or in a scenario file the notebook loads (with its ``extends:`` chain), or
it is in ``ALLOWED`` with a reason. A result quoted in prose goes stale the moment the model
changes; results are written by code cells from the run instead.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.py"))
BUDGET_S = 120.0  # per notebook in quick mode (05-plan, the longest, ~40 s here)
SCENARIOS = ROOT / "scenarios"

# Numbers a notebook's prose may state although neither its code nor its scenarios hold them:
# {notebook stem: {token as written: why it is not a result}}. An entry no longer found in the
# notebook fails the test, so the list cannot outlive its reasons.
ALLOWED: dict[str, dict[str, str]] = {
    "01-quickstart": {"01": "the notebook's number in its title"},
    "02-growth-and-shortfall": {"02": "the notebook's number in its title"},
    "03-east-west": {
        "03": "the notebook's number in its title",
        "5 ms": "policy target (region), quoted from the policy, not computed",
        "20 ms": "policy target (between hubs), quoted from the policy, not computed",
    },
}

_MONTHS = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
    "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
}  # fmt: skip
_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_ISO_DATE = re.compile(r"(?<!\d)(\d{4})-(\d{2})(?:-(\d{2}))?(?!\d)")
_DAY_MONTH = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+({_MONTH})\b", re.I)
_MONTH_DAY = re.compile(rf"\b({_MONTH})\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?![.,]?\d)", re.I)
_VAGUE_DATE = re.compile(
    rf"\b(?:early|mid|late|end|start|beginning)(?:-|\s+|\s+of\s+)({_MONTH})\b", re.I
)
_WORDS = {
    "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "twenty": 20, "thirty": 30, "forty": 40,
    "fifty": 50, "hundred": 100, "dozen": 12, "twice": 2, "double": 2, "half": 0.5,
    "third": 1 / 3, "fifth": 0.2, "sixth": 1 / 6, "tenth": 0.1,
}  # fmt: skip
_WORD = re.compile(r"\b(" + "|".join(_WORDS) + r")s?\b", re.I)
_NUMBER = re.compile(
    r"(?<![\d_.,])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?:e([-+]?\d+))?(?![\d,]*\d)(\s*%)?"
    r"(?:\s*(trillion|billion|million|thousand))?",
    re.I,
)
# A count of days, weeks, months or years is a duration and is matched against the durations of
# the inputs only ("six weeks" is 42 days, held by a "42d" or "6 weeks", not by any 6).
_DURATION = re.compile(r"^[\s-]*(days?|weeks?|months?|years?)\b", re.I)
_INPUT_DURATION = re.compile(
    r"(?<![A-Za-z_\d.])(\d+(?:\.\d+)?)\s*(d|days?|w|weeks?|months?|y|years?)\b", re.I
)
_DAYS = {"d": 1.0, "w": 7.0, "m": 30.0, "y": 365.0}
_SCALES = {"trillion": 1e12, "billion": 1e9, "million": 1e6, "thousand": 1e3}
# A number glued to these letters is a quantity (15min, 2d, x1.4); glued to others it is part of
# a name (DeepSeek-V3, 910B, H20, CO2), which is not a stated number.
_UNITS = {"", "x", "ms", "s", "d", "h", "min", "k", "m", "t", "w", "kw", "mw", "gw", "kwh", "us"}


@dataclass(frozen=True)
class Stated:
    """A number stated in a markdown cell: the token as written, the values it may stand for
    (a percentage is also its fraction; "140 trillion" is also 1.4e14), or the (month, day) of
    a date, or a vague date ("mid-March") that no input can hold."""

    cell: int
    token: str
    after: str = ""  # the text that follows, for allowlist entries with a unit ("5 ms")
    values: tuple[float, ...] = ()
    duration_d: float | None = None
    date: tuple[int, int] | None = None
    vague: bool = False


def percent_cells(text: str) -> list[tuple[str, str]]:
    """The cells of a jupytext percent script as (kind, source), kind "markdown" or "code";
    markdown lines lose their leading "# ". The header before the first cell is skipped."""
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# %%"):
            cells.append(("markdown" if "[markdown]" in line else "code", []))
        elif cells:
            kind, lines = cells[-1]
            if kind == "markdown":
                line = line[2:] if line.startswith("# ") else line.lstrip("#")
            lines.append(line)
    return [(kind, "\n".join(lines)) for kind, lines in cells]


def _month(name: str) -> int:
    return _MONTHS[name[:3].lower()]


def _blank(text: str, match: re.Match[str]) -> str:
    return text[: match.start()] + " " * (match.end() - match.start()) + text[match.end() :]


def stated_numbers(markdown: str, cell: int = 0) -> list[Stated]:
    """Every number written in one markdown cell. Inline code (`...`) is skipped: it names
    code, files and settings rather than stating a result."""
    text = re.sub(r"`[^`]*`", lambda m: " " * len(m.group()), markdown)
    text = re.sub(r"\]\([^)]*\)|https?://\S+", lambda m: " " * len(m.group()), text)
    out: list[Stated] = []
    for pattern, kind in ((_ISO_DATE, "iso"), (_DAY_MONTH, "dm"), (_MONTH_DAY, "md")):
        for m in list(pattern.finditer(text)):
            if kind == "iso":
                if m.group(3) is None:
                    continue  # "2026-03": a year and a month, left to the year below
                date = (int(m.group(2)), int(m.group(3)))
            elif kind == "dm":
                date = (_month(m.group(2)), int(m.group(1)))
            else:
                date = (_month(m.group(1)), int(m.group(2)))
            out.append(Stated(cell, m.group(), text[m.end() : m.end() + 12], date=date))
            text = _blank(text, m)
    for m in list(_VAGUE_DATE.finditer(text)):
        out.append(Stated(cell, m.group(), text[m.end() : m.end() + 12], vague=True))
        text = _blank(text, m)
    for m in _WORD.finditer(text):
        value = float(_WORDS[m.group(1).lower()])
        out.append(_counted(cell, m.group(), text[m.end() : m.end() + 12], value))
    for m in _NUMBER.finditer(text):
        digits_end = max(m.end(g) for g in (1, 2, 3) if m.group(g) is not None)
        glued = re.match(r"[A-Za-z]*", text[digits_end:])
        before = re.search(r"[A-Za-z]*$", text[: m.start()])
        glued_text = glued.group() if glued else ""
        before_text = before.group() if before else ""
        if m.group(4) is None and m.group(5) is None:
            if glued_text.lower() not in _UNITS or before_text.lower() not in ("", "x"):
                continue
        elif before_text.lower() not in ("", "x"):
            continue
        value = float(m.group(1).replace(",", "") + (m.group(2) or ""))
        value *= 10.0 ** int(m.group(3) or 0)
        values = [value]
        if m.group(4):
            values.append(value / 100)
        if m.group(5):
            values.append(value * _SCALES[m.group(5).lower()])
        token = m.group().strip()
        after = text[m.start() + len(token) : m.start() + len(token) + 12]
        if len(values) == 1:
            out.append(_counted(cell, token, after, value))
        else:
            out.append(Stated(cell, token, after, values=tuple(values)))
    return out


def _counted(cell: int, token: str, after: str, value: float) -> Stated:
    """A plain number, or a duration when a unit of time follows it."""
    unit = _DURATION.match(after)
    if unit:
        days = value * _DAYS[unit.group(1)[0].lower()]
        return Stated(cell, token, after, duration_d=days)
    return Stated(cell, token, after, values=(value,))


Inputs = tuple[set[float], set[tuple[int, int]], set[float], str]


def input_numbers(text: str) -> Inputs:
    """What code or a scenario file holds: numeric literals (names such as ``deepseek-v3``
    excluded; ``2d`` and ``1e-5`` included), dates as (month, day), and the lower-cased text
    (for vague dates, which only count when written there verbatim)."""
    values: set[float] = set()
    for m in re.finditer(r"(?<![A-Za-z_\d.])(\d[\d_]*)(\.\d+)?(?:e([-+]?\d+))?", text):
        values.add(
            float(m.group(1).replace("_", "") + (m.group(2) or "")) * 10.0 ** int(m.group(3) or 0)
        )
    dates = {(int(m.group(2)), int(m.group(3))) for m in _ISO_DATE.finditer(text) if m.group(3)}
    dates |= {(_month(m.group(2)), int(m.group(1))) for m in _DAY_MONTH.finditer(text)}
    dates |= {(_month(m.group(1)), int(m.group(2))) for m in _MONTH_DAY.finditer(text)}
    durations = {
        float(m.group(1)) * _DAYS[m.group(2)[0].lower()] for m in _INPUT_DURATION.finditer(text)
    }
    return values, dates, durations, text.lower()


def loaded_scenarios(code: str) -> list[Path]:
    """Scenario files the code names ("east-west.yaml", or "growth-continued" with the suffix
    added by an f-string), with the files they extend."""
    found = [
        path
        for path in sorted(SCENARIOS.rglob("*.yaml"))
        if re.search(rf"[\"'/]{re.escape(path.stem)}(?:\.yaml)?[\"']", code)
    ]
    out: list[Path] = []
    while found:
        path = found.pop()
        if path in out:
            continue
        out.append(path)
        parent = re.search(r"^extends:\s*(\S+)", path.read_text("utf-8"), re.M)
        if parent:
            found.append((path.parent / parent.group(1)).resolve())
    return out


def unsupported(stated: list[Stated], inputs: Inputs) -> list[Stated]:
    """The stated numbers that no input holds."""
    values, dates, durations, text = inputs

    def held(v: float) -> bool:
        return any(math.isclose(v, x, rel_tol=1e-9, abs_tol=1e-12) for x in values)

    out = []
    for s in stated:
        if s.date is not None:
            ok = s.date in dates
        elif s.duration_d is not None:
            ok = any(math.isclose(s.duration_d, d, rel_tol=1e-9) for d in durations)
        elif s.vague:
            ok = s.token.lower() in text
        else:
            ok = any(held(v) for v in s.values)
        if not ok:
            out.append(s)
    return out


def problems_in(path: Path) -> list[str]:
    """Numbers in a notebook's markdown that are neither inputs nor allowed, and stale entries
    of ``ALLOWED``, as messages."""
    cells = percent_cells(path.read_text("utf-8"))
    code = "\n".join(source for kind, source in cells if kind == "code")
    # A scenario's inputs are its values (descriptions included), not its comments: comments
    # carry sources and working that the notebook would have to restate in code to rely on.
    sources = code + "\n".join(
        re.sub(r"(?m)(?:^|\s)#.*$", "", p.read_text("utf-8")) for p in loaded_scenarios(code)
    )
    allowed = ALLOWED.get(path.stem, {})

    def allowed_as(s: Stated) -> str | None:
        written = s.token + s.after
        return next((key for key in allowed if written.startswith(key)), None)

    stated = [
        s
        for i, (kind, source) in enumerate(cells)
        if kind == "markdown"
        for s in stated_numbers(source, i)
    ]
    used = {allowed_as(s) for s in stated} - {None}
    messages = [
        f"{path.name}, cell {s.cell}: {s.token!r} is stated in markdown but is not an input "
        "(generate the sentence from the result in a code cell, or assert it)"
        for s in unsupported([s for s in stated if allowed_as(s) is None], input_numbers(sources))
    ]
    messages += [
        f"{path.name}: ALLOWED entry {token!r} is no longer in the notebook; remove it"
        for token in sorted(set(allowed) - used)
    ]
    return messages


def _kernel_available() -> str | None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        return (
            "no python3 Jupyter kernel: install ipykernel (pip install -e '.[dev]'), or "
            "register it with: python -m ipykernel install --sys-prefix"
        )
    return None


def test_the_notebooks_are_there() -> None:
    assert [p.name for p in PATHS] == [
        "01-quickstart.py",
        "02-growth-and-shortfall.py",
        "03-east-west.py",
        "04-day-night.py",
        "05-plan.py",
    ]
    for path in PATHS:
        text = path.read_text("utf-8")
        assert "format_name: percent" in text and "# %%" in text, path
        assert "GRIDSIM_QUICK" in text, path


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_notebook_runs_end_to_end(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jupytext = pytest.importorskip(
        "jupytext", reason="notebook tests need jupytext (pip install -e '.[dev]')"
    )
    nbclient = pytest.importorskip(
        "nbclient", reason="notebook tests need nbclient (pip install -e '.[dev]')"
    )
    missing = _kernel_available()
    if missing:
        pytest.fail(missing)
    monkeypatch.setenv("GRIDSIM_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = jupytext.read(path)
    client = nbclient.NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=600,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    started = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - started
    assert elapsed < BUDGET_S, f"{path.name} took {elapsed:.0f} s in quick mode"
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure was shown"
    printed = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "quick mode: True" in printed  # the kernel saw GRIDSIM_QUICK


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_notebook_prose_states_only_inputs(path: Path) -> None:
    problems = problems_in(path)
    assert not problems, "\n".join(problems)


def test_stated_numbers_are_found_and_checked() -> None:
    """The checker on a hand-made notebook: what it must flag and what it must let pass."""
    text = """# ---
# jupytext header 27 April
# ---

# %% [markdown]
# From 2 March 2026, 140 trillion tokens/day growing +40 % a quarter on `deepseek-v3` (H20).
#
# The shortfall comes on 27 April, or April 27; mid-March for DeepSeek-V3, six weeks earlier;
# a fifth are dropped; 1,234.5 cards and 1.46 x the mean; 2026-07-15 at the latest.

# %%
sets = ["horizon.start=2026-03-02", "demand.tokens_per_day=140e12", "rate=+40 %/quarter"]
"""
    cells = percent_cells(text)
    assert [kind for kind, _ in cells] == ["markdown", "code"]
    stated = stated_numbers(cells[0][1])
    tokens = sorted(s.token for s in stated)
    assert tokens == sorted(
        [
            "2 March", "2026", "140 trillion", "+40 %" if False else "40 %", "27 April",
            "April 27", "mid-March", "six", "fifth", "1,234.5", "1.46", "2026-07-15",
        ]
    )  # fmt: skip
    inputs = input_numbers(cells[1][1])
    flagged = sorted(s.token for s in unsupported(stated, inputs))
    # Inputs: 2 March (2026-03-02), 2026, 140 trillion (140e12), 40 % (40). Results: the rest.
    assert flagged == sorted(
        ["27 April", "April 27", "mid-March", "six", "fifth", "1,234.5", "1.46", "2026-07-15"]
    )


def test_the_checker_fails_on_a_stale_sentence(tmp_path: Path) -> None:
    """A notebook that quotes a shortfall date its code does not compute is caught, with the
    cell and the token; an allowlist entry absent from the notebook is caught as stale."""
    stale = tmp_path / "02-growth-and-shortfall.py"
    stale.write_text(
        "# %% [markdown]\n# # 02 · Growth\n# Capacity runs out on **27 April 2026**.\n"
        '# %%\nscenario = "growth-continued.yaml"\n',
        "utf-8",
    )
    problems = problems_in(stale)
    assert problems == [
        f"{stale.name}, cell 0: '27 April' is stated in markdown but is not an input "
        "(generate the sentence from the result in a code cell, or assert it)"
    ]
    quiet = tmp_path / "03-east-west.py"
    quiet.write_text("# %% [markdown]\n# # 03 · East-west, 5 ms\n# %%\nx = 1\n", "utf-8")
    assert problems_in(quiet) == [
        f"{quiet.name}: ALLOWED entry '20 ms' is no longer in the notebook; remove it",
    ]
