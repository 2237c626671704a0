"""A quoted sentence that says something else than the question assumes: unit cases, then a real index."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag import prompts
from rag.answer import contrast, focus
from rag.engine import Engine
from tests.sample_docs import offline_engine


@pytest.mark.parametrize(
    ("question", "sentence", "reason"),
    [
        # Hand-written in the manner of SQuAD v2's unanswerable questions.
        ("Who was the last person to walk on the Moon?", "Armstrong was the first person to walk on it.", "opposite"),
        ("When did nationalism decline in Scotland?", "A sharp rise in nationalism followed in 1969.", "opposite"),
        ("What were the Normans' major imports?", "Their major exports were wine and cloth.", "opposite"),
        ("What is the unofficial name of the dynasty?", "The official name of the dynasty was Great Yuan.", "negated"),
        ("What do non-tropical climates produce?", "Tropical climates were said to produce laziness.", "negated"),
        ("Which king approved the plans?", "The king disapproved of the plans.", "negated"),
        ("Built with four layers, what did it evolve into?", "Built with three layers, it grew to seven.", "number"),
        ("Which river is the third-longest in Europe?", "It is the second-longest river in Europe.", "number"),
        ("What did the price of oil reach in 1970?", "In 1973 the price of oil reached $12.", "identifier"),
        ("Is HTTP/3 supported?", "HTTP/2 is supported.", "identifier"),
    ],
)
def test_conflicts_on_hand_checked_near_misses(question: str, sentence: str, reason: str) -> None:
    assert contrast.conflict(question, sentence) == reason


@pytest.mark.parametrize(
    ("question", "sentence"),
    [
        ("Who was the first person to walk on the Moon?", "Armstrong was the first person to walk on it."),
        ("What two areas granted rights first?", "Holland and Zeeland were the first to grant rights."),
        ("Where does the river end?", "It flows into the North Sea near Rotterdam."),  # "North" names the sea
        ("Which river is the second-longest?", "The Rhine is the second-longest river in Central Europe."),
        ("When did Apollo 11 land?", "The lunar module landed on July 20, 1969."),
        ("Who did not sign the treaty?", "The king was unable to sign it."),  # negated on both sides
        ("How can I subscribe to the list?", "To subscribe or unsubscribe, visit the list's page."),
        ("How long is the Rhine?", "The Rhine is about 1,230 kilometres long, unless measured at its delta."),
    ],
)
def test_no_conflict_where_the_sentence_answers(question: str, sentence: str) -> None:
    assert contrast.conflict(question, sentence) is None


@pytest.mark.parametrize(
    ("question", "sentence", "context"),
    [
        # The year or period is the table's title, the sheet's name or the heading's.
        ("What were sales of Zone EUR in January–June 2023?", "Zone: Zone EUR | Sales: 9342", "January–June 2023"),
        ("How many titles have the Rovers won since 1967?", "Club: Rovers | Titles: 12", "Since 67\n1967 2067"),
        ("What was decided after the Q4 planning meeting?", "Hiring was paused.", "Q4 planning meeting > Decisions"),
    ],
)
def test_a_year_or_version_the_document_s_titles_name_is_no_conflict(
    question: str, sentence: str, context: str
) -> None:
    assert contrast.conflict(question, sentence) == "identifier"  # the sentence alone lacks it
    assert contrast.conflict(question, sentence, context) is None
    near = question.replace("2023", "2021").replace("1967", "1971").replace("Q4", "Q3")
    assert contrast.conflict(near, sentence, context) == "identifier"  # a real near miss


# --- a real index -----------------------------------------------------------------------------

CORPUS = {
    "apollo.txt": (
        "Apollo 11 was the American spaceflight that first landed humans on the Moon, a goal set in 1961. "
        "Commander Neil Armstrong and lunar module pilot Buzz Aldrin landed the Apollo Lunar Module Eagle "
        "on July 20, 1969. "
        "Armstrong became the first person to step onto the lunar surface six hours later.\n\n"
        "The astronauts collected 21.5 kilograms of lunar material to bring back to Earth. The mission was "
        "launched by a Saturn V rocket from Kennedy Space Center in Florida on July 16, 1969."
    ),
    "rhine.md": (
        "# The Rhine\n\nThe Rhine begins in the Swiss canton of Graubünden in the southeastern Swiss Alps "
        "and flows into the North Sea near Rotterdam. The Rhine is about 1,230 kilometres long. It is the "
        "second-longest river in Central and Western Europe, after the Danube."
    ),
    "bread.txt": (
        "Sourdough bread is made by the fermentation of dough using naturally occurring lactobacilli and "
        "yeast. A sourdough starter is kept alive by regular feeding with flour and water."
    ),
}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return offline_engine(CORPUS, tmp_path_factory.mktemp("corpus"), tmp_path_factory.mktemp("store"), "contrast")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("asked", "near_miss", "expected", "source"),
    [
        (
            "Who was the first person to step onto the lunar surface?",
            "Who was the last person to step onto the lunar surface?",
            "Armstrong",
            "apollo.txt",
        ),
        (
            "What was launched from Kennedy Space Center in 1969?",
            "What was launched from Kennedy Space Center in 1961?",
            "Saturn V",
            "apollo.txt",
        ),
        (
            "Which river is the second-longest in Central and Western Europe?",
            "Which river is the third-longest in Central and Western Europe?",
            "second-longest river",
            "rhine.md",
        ),
    ],
)
def test_a_near_miss_is_declined_and_the_question_it_mimics_answered(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, asked: str, near_miss: str, expected: str, source: str
) -> None:
    answer = engine.ask(asked)
    assert not answer.refused, answer.text
    assert expected in answer.text
    assert any(Path(c.source).name == source for c in answer.citations)

    declined = engine.ask(near_miss)
    assert declined.refused and declined.text == prompts.REFUSAL, declined.text
    assert declined.to_dict()["refused"] is True

    # The contrast check is what declines it: without it (and without the check on rival
    # compounds, which "third-longest" meets too) the same sentence would be quoted.
    monkeypatch.setattr(contrast, "conflict", lambda question, sentences, context="": None)
    monkeypatch.setattr(focus, "rival_compounds", lambda question, text: None)
    unchecked = engine.ask(near_miss)
    assert not unchecked.refused and expected in unchecked.text, unchecked.text
