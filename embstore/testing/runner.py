"""Running conformance checks: each check once per subject, its outcome (pass, fail, skip) recorded.

A check is a module-level function declared with ``@check(title)``; its title is
what users read, with ``{fields}`` filled from the subject and the check's
parameters when it is bound. A ``Subject`` runs each bound check at most once and
remembers how it ended, so a check that another check depends on is an attribute
of the subject: reading it returns the check's value, or raises ``Skip`` naming
the check when it failed or was skipped (so a bare ``subject.ready`` at the top
of a check states a prerequisite).
"""

from __future__ import annotations

import time
import traceback
import unittest
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
_HERE = Path(__file__).resolve().parent


@dataclass
class ConformanceReport:
    """What one kit run found: check names that passed, failed (with why) and were skipped."""

    subject: str
    passed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def __str__(self) -> str:
        lines = [f"conformance of {self.subject}: {len(self.passed)} passed, "
                 f"{len(self.failed)} failed, {len(self.skipped)} skipped"]
        lines += [f"  FAIL {name}: {why}" for name, why in self.failed]
        lines += [f"  PASS {name}" for name in self.passed]
        lines += [f"  SKIP {name}: {why}" for name, why in self.skipped]
        return "\n".join(lines)


class ConformanceError(AssertionError):
    """One or more conformance checks failed; ``report`` holds them all."""

    def __init__(self, report: ConformanceReport):
        self.report = report
        failures = "\n".join(f"  - {name}: {why}" for name, why in report.failed)
        super().__init__(
            f"{report.subject} fails {len(report.failed)} of "
            f"{len(report.failed) + len(report.passed)} conformance checks:\n{failures}"
        )


class Failed(Exception):
    """Raised inside a check to fail it with a message (an AssertionError does too)."""


class Skip(Exception):
    """Raised inside a check to skip it with a reason."""


def check(title: str) -> Callable[[F], F]:
    """Declare a function ``fn(subject, **params)`` a conformance check titled ``title``."""
    def declare(fn: F) -> F:
        fn.check_title = title  # type: ignore[attr-defined]
        return fn

    return declare


@dataclass
class Check:
    """A check function with its parameters and its title filled in."""

    title: str
    fn: Callable[..., Any]
    params: dict[str, Any] = field(default_factory=dict)

    def run(self, subject: "Subject") -> Any:
        return self.fn(subject, **self.params)


class Subject:
    """What checks run against; runs each bound check at most once and remembers its outcome.

    Subclasses set ``id`` (the prefix of pytest ids, e.g. ``producer:item2vec``) and
    ``label`` (the report's subject), and may add title fields.
    """

    id = "subject"
    label = "subject"

    def __init__(self) -> None:
        self._ended: dict[str, tuple[Any, BaseException | None]] = {}
        self.seconds: dict[str, float] = {}

    def title_fields(self) -> dict[str, str]:
        """Values for ``{fields}`` of check titles besides the check's own parameters."""
        return {}

    def bind(self, fn: Callable[..., Any], **params: Any) -> Check:
        title = fn.check_title  # type: ignore[attr-defined]
        return Check(title.format(**self.title_fields(), **params), fn, params)

    def outcome(self, chk: Check) -> Any:
        """The check's value, running it the first time; re-raises how it failed or skipped."""
        if chk.title not in self._ended:
            started = time.perf_counter()
            try:
                self._ended[chk.title] = (chk.run(self), None)
            except Exception as exc:  # kept and re-raised: the runner tells failures from crashes
                self._ended[chk.title] = (None, exc)
            self.seconds[chk.title] = time.perf_counter() - started
        value, error = self._ended[chk.title]
        if error is not None:
            raise error
        return value

    def needs(self, fn: Callable[..., Any], **params: Any) -> Any:
        """The value of a prerequisite check; ``Skip`` naming it when it did not pass."""
        chk = self.bind(fn, **params)
        try:
            return self.outcome(chk)
        except Exception:
            raise Skip(f"needs {chk.title!r}") from None


def record(report: ConformanceReport, subject: Subject, chk: Check) -> None:
    """Run one check on ``subject`` (or recall its outcome) and add it to ``report``."""
    try:
        subject.outcome(chk)
    except Skip as exc:
        report.skipped.append((chk.title, str(exc)))
    except (Failed, AssertionError) as exc:
        report.failed.append((chk.title, str(exc) or type(exc).__name__))
    except Exception as exc:  # a crash inside a check is a failure of that check, not of the kit
        report.failed.append((chk.title, f"unexpected {describe(exc)}"))
    else:
        report.passed.append(chk.title)
        report.seconds[chk.title] = subject.seconds.get(chk.title, 0.0)


def run_checks(subject: Subject, checks: Iterable[Check]) -> ConformanceReport:
    """Every check in order; a failure does not stop the others."""
    report = ConformanceReport(subject.label)
    for chk in checks:
        record(report, subject, chk)
    return report


def finish(report: ConformanceReport) -> ConformanceReport:
    """The report, or ConformanceError listing every failed check."""
    if report.failed:
        raise ConformanceError(report)
    return report


@dataclass
class BoundCheck:
    """One check of one subject, called with no arguments: what one pytest test id runs.

    Fails with ConformanceError, is skipped with ``unittest.SkipTest`` (pytest shows a
    skip), else returns the one-check report. Outcomes are shared through the subject,
    so the checks of one subject fit once between them.
    """

    subject: Subject
    check: Check

    @property
    def id(self) -> str:
        return f"{self.subject.id}-{self.check.title}"

    def __call__(self) -> ConformanceReport:
        report = ConformanceReport(self.subject.label)
        record(report, self.subject, self.check)
        if report.skipped:
            title, why = report.skipped[0]
            raise unittest.SkipTest(f"{title}: {why}")
        return finish(report)

    def __repr__(self) -> str:
        return f"<check {self.id!r}>"


def describe(exc: BaseException) -> str:
    """``TypeName: message (at file:line)`` of where the exception was raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    # the innermost frame of the plugin's own code says more than one inside pandas or numpy
    own = [f for f in frames if "site-packages" not in f.filename and "dist-packages" not in f.filename
           and Path(f.filename).resolve().parent != _HERE]
    frame = (own or frames)[-1] if frames else None
    where = f" (at {Path(frame.filename).name}:{frame.lineno})" if frame else ""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}{where}" if text else f"{type(exc).__name__}{where}"
