"""The manuals question set of benchmarks/answers.py: its pages hold every gold answer, none of
the unanswerable questions' subjects, and each page is listed in SOURCE.md with a license."""

from __future__ import annotations

from benchmarks.llm_prompts import MANUAL_QUESTIONS, MANUALS, contains, normalize


def test_each_gold_answer_is_in_the_manuals_and_the_set_is_15_plus_5() -> None:
    pages = " ".join(p.read_text(encoding="utf-8") for p in sorted(MANUALS.rglob("*.md")) if p.name != "SOURCE.md")
    answerable = [q for q in MANUAL_QUESTIONS if q.answerable]
    assert (len(answerable), len(MANUAL_QUESTIONS) - len(answerable)) == (15, 5)
    assert [q.text for q in answerable if not contains(pages, q.gold)] == []
    # What the unanswerable ones hinge on is absent ("retries", "no-wheel", "publish" ...).
    for word in ("retries", "no-wheel", "publish", "enable"):
        assert f" {normalize(word)} " not in f" {normalize(pages)} "


def test_every_page_is_listed_with_its_source_and_license() -> None:
    source = (MANUALS / "SOURCE.md").read_text(encoding="utf-8")
    for page in MANUALS.rglob("*.md"):
        if page.name != "SOURCE.md":
            row = next(line for line in source.splitlines() if line.startswith(f"| {page.parent.name}/{page.name} |"))
            assert row.rstrip(" |").endswith(("BSD-3-Clause", "MIT"))
