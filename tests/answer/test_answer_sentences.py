"""The right sentence from the right chunk (issue 28, part 1): phrases, question cues,
signatures, Markdown emphasis; then the eval set of tests/sentence_docs.py with the real model."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.answer import focus
from rag.answer.extractive import Scored, Sentence, candidates, choice_bonus, phrase_weight, phrases, select
from rag.engine import Engine
from rag.results import Hit
from tests.sentence_docs import NEAR_MISSES, QUESTIONS, write_documents

WING = "What are wing-type Boots self-locking nuts made of?"
TOPIC = [
    "Boots self-locking nuts are made with three different spring styles.",
    "Boots self-locking nuts are identified by a colour mark on the body of the nut.",
    "Boots self-locking nuts are of one-piece, all-metal construction.",
]
SPECIFIC = "Wing-type nuts are made of anodized aluminum alloy."


def hit(text: str, source: str = "manual.txt") -> Hit:
    return Hit(rank=1, score=1.0, chunk_id="c", source=source, page=None, heading="", text=text, relevance=0.5)


def scored(texts: list[str], scores: list[float]) -> list[Scored]:
    return [Scored(Sentence(0, 0, len(t), t), s) for t, s in zip(texts, scores, strict=True)]


def test_phrases_keep_function_words_inside_and_leave_the_asking_out() -> None:
    assert phrases(WING) >= {("wing", "type"), ("made", "of"), ("self", "lock")}
    assert not any({"what", "who"} & set(p) for p in phrases(WING + " Who signed it?"))
    assert ("of", "the") not in phrases("made of the steel")


def test_the_phrases_no_other_sentence_has_weigh_most() -> None:
    weights = phrase_weight(WING, [*TOPIC, SPECIFIC])
    assert weights[-1] > max(weights[:-1]) > 0


def test_select_quotes_the_specific_sentence_first_and_keeps_the_best_scored() -> None:
    # The embedder favours the topic sentence by about 0.1 (measured on the eval set: 1.02 against 0.89).
    ranked = scored([*TOPIC, SPECIFIC], [1.02, 0.91, 0.90, 0.89])
    assert select(ranked, 0.5)[0].sentence.text == TOPIC[0]  # by the score alone
    chosen = [s.sentence.text for s in select(ranked, 0.5, WING)]
    assert chosen[0] == SPECIFIC and TOPIC[0] in chosen
    # The decision to answer stays the score's; a sentence far below the best is not picked.
    assert select(ranked, 1.1, WING) == []
    far = scored([TOPIC[0], SPECIFIC], [1.02, 0.80])
    assert [s.sentence.text for s in select(far, 0.5, WING)] == [TOPIC[0]]


def test_questions_that_ask_for_a_form_prefer_it() -> None:
    listing = "There will be a bouncy castle, face painting, a treasure hunt and pony rides."
    title = "You are invited to the family day on Saturday."
    bonus = choice_bonus("What activities will there be at the family day?", [title, listing])
    assert bonus[1] > 0 and bonus[1] > bonus[0] - 0.2  # the list's cue makes up for the topic phrases
    signature = "Yours sincerely, Margaret Holloway, Chair of the Board"
    assert choice_bonus("Who signed the letter?", ["The letter is enclosed.", signature])[1] > 0
    assert choice_bonus("Who wrote Hamlet?", [signature]) == [0.0]  # no phrase, no sign-off asked for


def test_a_list_or_a_table_row_is_the_form_what_activities_asks_for() -> None:
    question = "What activities will there be at the family day?"
    forms = [
        "There will be face painting, a bouncy castle and a barbecue.",
        "What's on: Face painting; A bouncy castle; Pony rides",
        "Time: 11:00 | Activity: Face painting | Where: Tent A",
        "Time: 11:00 | Category: Crafts | Where: Tent A",  # no column named for what is asked
        "In 1990, he moved to Paris and married.",  # clauses, not items
        "The day starts at 11:00 in the meadow, and a shuttle bus runs from the station.",
    ]
    assert [b > 0 for b in choice_bonus(question, forms)] == [True, True, True, False, False, False]


def test_a_sentence_of_the_asked_form_leads_from_further_down_and_title_phrases_name_the_topic() -> None:
    question = "What activities will there be at the family day?"
    topic = "The family day takes place on Saturday 8 June in the meadow behind Building C."
    listing = "There will be face painting, a bouncy castle and a barbecue."
    title = ["Riverside Family Day\nfamily day"]
    ranked = [Scored(Sentence(0, 0, 1, topic), 0.77), Scored(Sentence(0, 2, 3, listing), 0.56)]
    # 0.21 below the best (measured on an invitation: 0.15-0.25), beyond PICK_WINDOW.
    assert select(ranked, 0.5, question, title)[0].sentence.text == listing
    # Without the titles, "the family day" is the one sentence's phrase and keeps it first.
    assert select(ranked, 0.5, question)[0].sentence.text == topic
    far = [ranked[0], Scored(Sentence(0, 2, 3, listing), 0.35)]
    assert select(far, 0.3, question, title)[0].sentence.text == topic


@pytest.mark.parametrize(
    ("heading", "text", "expected"),
    [
        (  # a slide: its title leads the lines of its body
            "What's on",
            "What's on\n\nFace painting\nA bouncy castle\nPony rides",
            ["What's on: Face painting; A bouncy castle; Pony rides"],
        ),
        (  # Word paragraphs after a line ending in a colon
            "Invitation",
            "Dear all,\n\nWhat's on:\n\nFace painting\n\nPony rides\n\nPlease register by 24 May.",
            ["Dear all,", "What's on: Face painting; Pony rides", "Please register by 24 May."],
        ),
        (  # bullets, a PDF's line after the last running on
            "",
            "- Face painting\n- A bouncy castle\n- Pony rides\nPlease register by 24 May.",
            ["Face painting; A bouncy castle; Pony rides", "Please register by 24 May."],
        ),
        (  # items that are sentences stay sentences
            "",
            "- Merge the branch after all tests pass.\n- Tag the release.\n- Announce it.",
            ["Merge the branch after all tests pass.", "Tag the release.", "Announce it."],
        ),
        (  # a narrow column's wrapped lines after a colon are prose
            "",
            "The patients were divided as follows:\nthe first group took the\ndrug and the second none.",
            ["The patients were divided as follows: the first group took the drug and the second none."],
        ),
    ],
)
def test_a_list_is_one_sentence_quoted_whole(heading: str, text: str, expected: list[str]) -> None:
    hit = Hit(rank=1, score=1.0, chunk_id="c", source="a.docx", page=None, heading=heading, text=text, relevance=0.5)
    found = candidates([hit])
    assert [s.text.removeprefix("- ") for s in found] == expected
    assert all(text[s.start : s.end].split()[-1] in s.text for s in found)


LETTER = (
    "We are grateful to residents like you who take the time to let us know.\n\n"
    "Yours sincerely,\n\nMargaret Holloway\n\nChair of the Board of Trustees"
)


def test_a_signature_is_one_whole_sentence_and_signs_its_chunk() -> None:
    found = candidates([hit(LETTER, "letter.docx")])
    # Lines without a full stop at a chunk's end were dropped as cut; a signature is whole.
    assert [s.text for s in found] == [
        "We are grateful to residents like you who take the time to let us know.",
        "Yours sincerely, Margaret Holloway, Chair of the Board of Trustees",
    ]
    assert LETTER[found[1].start : found[1].end].startswith("Yours sincerely,\n\nMargaret")
    mail = "Thanks for the quick reply.\nBest regards,\nAna Silva\nProject lead"
    assert [s.text for s in candidates([hit(mail, "a.eml")])][-1] == "Best regards, Ana Silva, Project lead"
    assert "signed" in focus.context(hit(LETTER)).split()
    assert "signed" not in focus.context(hit("Best wishes for the new year to all our readers.")).split()


def test_markdown_emphasis_is_not_quoted_but_offsets_point_at_the_source() -> None:
    text = "- The changelog is written by the *developer who merged* it. The **site** is rebuilt by `make_docs`."
    found = candidates([hit(text, "release.md")])
    assert [s.text for s in found] == [
        "The changelog is written by the developer who merged it.",
        "The site is rebuilt by `make_docs`.",
    ]
    assert [text[s.start : s.end] for s in found] == [
        "- The changelog is written by the *developer who merged* it.",
        "The **site** is rebuilt by `make_docs`.",
    ]
    # Outside Markdown an asterisk or underscore is the text's own: 2 * 3 * 4, __init__.
    plain = "Call __init__ with 2 * 3 * 4 and *args."
    assert [s.text for s in candidates([hit(plain, "notes.txt")])] == [plain]


def test_a_compound_the_text_names_only_other_kinds_of_is_a_near_miss() -> None:
    text = "Wing-type nuts are light. Channel-type nuts sit in rows. Boots self-locking nuts hold tight."
    term, mentioned = focus.rival_compounds("What are hex-type Boots self-locking nuts made of?", text) or (None, [])
    assert term is not None and term.text == "hex-type" and mentioned == ["Wing-type", "Channel-type"]
    assert focus.near_miss_text([term], mentioned) == "The documents mention Channel-type and Wing-type, not hex-type."
    assert focus.rival_compounds("What are wing-type nuts made of?", text) is None
    assert focus.rival_compounds("What are the self-locking nuts made of?", text) is None  # no rival head


# --- the eval set, the real local model -------------------------------------------------------


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    docs = write_documents(tmp_path_factory.mktemp("docs"))
    engine = Engine(
        index="sentences", store=tmp_path_factory.mktemp("store"), embedding__embedder="local", llm__llm="none"
    )
    engine.ingest([docs])
    return engine


@pytest.mark.slow
@pytest.mark.parametrize(("question", "expected", "source"), QUESTIONS)
def test_the_answer_quotes_the_sentence_with_the_questions_specific_terms(
    engine: Engine, question: str, expected: str, source: str
) -> None:
    answer = engine.ask(question)
    assert not answer.refused, answer.text
    assert expected in answer.text and "*" not in answer.text and not answer.text.startswith("- "), answer.text
    assert any(Path(c.source).name == source and f"[{c.n}]" in answer.text for c in answer.citations)


@pytest.mark.slow
@pytest.mark.parametrize("question", NEAR_MISSES)
def test_near_misses_of_the_eval_set_are_declined(engine: Engine, question: str) -> None:
    answer = engine.ask(question)
    assert answer.refused, answer.text
