#!/usr/bin/env python3
"""The closing table of scripts/test.sh: every suite of every build with its passed / failed /
skipped counts, the skip reasons grouped, and the parts that were not built.

    test_summary.py NAME=BUILD_DIR ...

Reads, per build folder: ctest-junit.xml (ctest --output-junit), the tests' labels (ctest
--show-only=json-v1), pytest-reports/*.xml (each pytest suite's own JUnit report, written by the
tests cmake/FattnTesting.cmake's fattn_add_pytest registers), fattn-parts.tsv (what configure
built) and fattn-build-failed (test.sh's marker of a failed build). A folder with pytest reports
and no CTest report (the doc-block stage) is counted by its reports alone. A CTest test that runs pytest
is counted by pytest's cases, every other one as one case under its first label. The last line
is the plain total, "N passed, N failed, N skipped". Standard library only.
"""
import collections
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

# How a skipped CTest test (exit 77) says why: the first line of its output that mentions it.
_REASON = re.compile(r"skip|no cuda device|not available|cannot run", re.IGNORECASE)


class Row:
    def __init__(self, build, suite):
        self.build, self.suite = build, suite
        self.passed = self.failed = self.skipped = 0
        self.reasons = collections.Counter()
        self.notes = []

    def notes_text(self):
        parts = [f"{n} skipped: {reason}" for reason, n in self.reasons.most_common()]
        return "; ".join(parts + self.notes)


def _labels(build_dir):
    try:
        out = subprocess.run(["ctest", "--show-only=json-v1"], cwd=build_dir, check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    labels = {}
    for test in json.loads(out).get("tests", []):
        props = {p["name"]: p["value"] for p in test.get("properties", [])}
        labels[test["name"]] = props.get("LABELS") or ["unlabelled"]
    return labels


def _outcome(case):
    """'failed', 'skipped' (with its message) or 'passed' for one JUnit testcase."""
    for child in case:
        if child.tag in ("failure", "error"):
            return "failed", ""
        if child.tag == "skipped":
            return "skipped", child.get("message") or ""
    if case.get("status") in ("fail", "notrun", "disabled"):
        return ("failed" if case.get("status") == "fail" else "skipped"), ""
    return "passed", ""


def _ctest_skip_reason(case, message):
    out = case.findtext("system-out") or ""
    for line in out.splitlines():
        if _REASON.search(line):
            return line.strip()
    return message or "skipped by its exit status"


def _pytest_reason(message):
    # pytest words it "Skipped: why" or "path:line: why"; the why is what groups.
    message = re.sub(r"^Skipped:\s*", "", message.strip())
    return message or "no reason given"


def _pytest_row(build, name, path):
    row = Row(build, f"pytest {name}")
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        outcome, message = _outcome(case)
        if outcome == "passed":
            row.passed += 1
        elif outcome == "failed":
            row.failed += 1
        else:
            row.skipped += 1
            row.reasons[_pytest_reason(message)] += 1
    return row


def summarise(builds):
    rows, missing = [], collections.OrderedDict()
    for build, build_dir in builds:
        parts = os.path.join(build_dir, "fattn-parts.tsv")
        if os.path.exists(parts):
            with open(parts) as f:
                for line in f:
                    name, status, reason = (line.rstrip("\n").split("\t") + ["", ""])[:3]
                    if status not in ("built", "registered"):
                        missing.setdefault((name, status, reason), []).append(build)
        if os.path.exists(os.path.join(build_dir, "fattn-build-failed")):
            row = Row(build, "build")
            row.failed = 1
            row.notes.append("the build failed: no test ran")
            rows.append(row)
            continue
        junit = os.path.join(build_dir, "ctest-junit.xml")
        reports = os.path.join(build_dir, "pytest-reports")
        if not os.path.exists(junit) and os.path.isdir(reports):
            # A stage that ran pytest alone (the doc blocks): its reports are the whole story.
            for name in sorted(os.listdir(reports)):
                if name.endswith(".xml"):
                    rows.append(_pytest_row(build, name[:-4], os.path.join(reports, name)))
            continue
        if not os.path.exists(junit):
            row = Row(build, "ctest")
            row.failed = 1
            row.notes.append("ctest wrote no report")
            rows.append(row)
            continue
        labels = _labels(build_dir)
        by_label = collections.OrderedDict()
        pytest_rows = []
        for case in ET.parse(junit).getroot().iter("testcase"):
            name = case.get("name")
            outcome, message = _outcome(case)
            report = os.path.join(reports, f"{name}.xml")
            if outcome != "skipped" and os.path.exists(report):
                row = _pytest_row(build, name, report)
                if outcome == "failed" and row.failed == 0:
                    row.failed = 1
                    row.notes.append("pytest exited non-zero with no failed case")
                pytest_rows.append(row)
                continue
            label = labels.get(name, ["unlabelled"])[0]
            row = by_label.setdefault(label, Row(build, f"ctest label {label}"))
            if outcome == "passed":
                row.passed += 1
            elif outcome == "failed":
                row.failed += 1
                row.notes.append(f"FAILED: {name}")
            else:
                row.skipped += 1
                row.reasons[f"{name}: {_ctest_skip_reason(case, message)}"] += 1
        rows += list(by_label.values()) + sorted(pytest_rows, key=lambda r: r.suite)
    return rows, missing


def render(rows, missing):
    head = ("build", "suite", "passed", "failed", "skipped", "notes")
    table = [head] + [(r.build, r.suite, str(r.passed), str(r.failed), str(r.skipped),
                       r.notes_text()) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(5)]
    lines = ["== summary"]
    for line in table:
        cells = [line[0].ljust(widths[0]), line[1].ljust(widths[1])]
        cells += [line[i].rjust(widths[i]) for i in (2, 3, 4)]
        lines.append("  ".join(cells + [line[5]]).rstrip())
    if missing:
        lines.append("not built or not registered:")
        for (name, status, reason), where in missing.items():
            lines.append(f"  {name}: {status}, {reason} ({', '.join(where)} build)")
    passed = sum(r.passed for r in rows)
    failed = sum(r.failed for r in rows)
    skipped = sum(r.skipped for r in rows)
    lines.append(f"{passed} passed, {failed} failed, {skipped} skipped")
    return "\n".join(lines)


def main(argv):
    builds = []
    for arg in argv:
        name, sep, path = arg.partition("=")
        if not sep or not name or not path:
            sys.exit(f"test_summary.py: argument {arg!r} is not NAME=BUILD_DIR")
        builds.append((name, path))
    if not builds:
        sys.exit("usage: test_summary.py NAME=BUILD_DIR ...")
    rows, missing = summarise(builds)
    print(render(rows, missing))
    return 1 if any(r.failed for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
