"""Near misses, the words that answer, and offline follow-ups: unit tests, then a real index.

The real index is a small software manual written for these tests (tests/fixtures/manual,
CC0), embedded with the real local model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rag import prompts
from rag.answer import focus, relevance
from rag.answer.span import answer_span
from rag.engine import Engine
from rag.results import Answer, Hit, Span
from tests.conftest import FIXTURES
from tests.helpers import hit
from tests.sample_docs import offline_engine, write_sample_docs

# --- focus terms ------------------------------------------------------------------------------


def test_terms_keep_identifiers_numbers_and_words_but_not_how_a_question_asks() -> None:
    found = focus.terms("Which exception is raised when HTTPX cannot acquire a connection in 2024? (HTTP/3, ARM64)")
    assert [(t.text, t.kind) for t in found] == [
        ("exception", "word"),
        ("raised", "word"),
        ("HTTPX", "word"),
        ("cannot", "word"),
        ("acquire", "word"),
        ("connection", "word"),
        ("2024", "number"),
        ("HTTP/3", "identifier"),
        ("ARM64", "identifier"),
    ]
    assert [t.kind for t in focus.terms("PoolTimeout max_connections os.path C++ 10th")] == [
        "identifier",
        "identifier",
        "identifier",
        "identifier",
        "number",
    ]


def test_evidence_matches_words_loosely_and_identifiers_exactly() -> None:
    evidence = focus.Evidence("HTTPX supports HTTP/1.1 and HTTP/2. The Normans conquered England.")
    has = {t.text: evidence.has(t) for t in focus.terms("HTTP/2 HTTP/3 conquest Normans supported England 1.1")}
    assert has == {
        "HTTP/2": True,
        "HTTP/3": False,
        "conquest": True,  # a shared five-letter prefix ("conqu")
        "Normans": True,
        "supported": True,
        "England": True,
        "1.1": True,  # a part of "HTTP/1.1"
    }
    numbers = focus.Evidence("Use timeout=10.0 for 1,230 requests over HTTP2.")
    assert [numbers.has(t) for t in focus.terms("10 1230 HTTP/2 HTTP/3 11")] == [True, True, True, False, False]


@pytest.mark.parametrize(
    ("question", "text", "found"),
    [
        ("What opens on 3월 30일?", "The library reopens on 2020.3.30. after works.", True),
        ("What opens on March 30?", "The library reopens on 2020.3.30. after works.", True),
        ("What opens on 30 March 2020?", "Opening: 2020-03-30", True),
        ("What opens on the 30th of March?", "It opens on 3/30/2021.", True),
        ("What opens on March 30, 2020?", "It opened on 30 March 2019.", False),  # another year
        ("What opens on March 31?", "The library reopens on 2020.3.30. after works.", False),
        ("What opens on 3월 30일?", "It opens on 30 March.", True),
    ],
)
def test_dates_compare_in_their_common_forms(question: str, text: str, found: bool) -> None:
    dates = [t for t in focus.terms(question) if t.kind == "date"]
    assert len(dates) == 1
    assert focus.Evidence(text).has(dates[0]) is found


def test_context_is_titles_heading_and_file_name_with_the_years_they_abbreviate() -> None:
    table = Hit(1, 1.0, "c", "/d/club_results.xlsx", None, "Since 67 > rows 2-5", "# FY '23\nClub: Rovers | Titles: 12")
    context = focus.context(table)
    assert "club results" in context and "Since 67" in context and "FY '23" in context
    assert {"1967", "2023"} <= set(context.split())
    assert "Rovers" not in context  # a row is no title
    evidence = focus.Evidence(focus.chunk_evidence(table))
    assert all(evidence.has(t) for t in focus.terms("Rovers since 1967"))


def test_a_comment_in_a_code_block_is_no_title() -> None:
    page = "# Setup\n\nInstall it:\n\n```bash\n# fetch the wheel first\npip install tool\n```\n"
    context = focus.context(Hit(1, 1.0, "c", "guide.md", None, "Setup", page))
    assert "Setup" in context and "fetch" not in context


def test_check_weighs_missing_terms_by_rarity() -> None:
    counts = {"river": 40, "Rhine": 2, "length": 10, "Danube": 0}
    rarity = focus.Rarity(lambda phrases: {p: counts.get(p, 5) for p in phrases}, chunks=50)
    check = focus.check(
        "How long is the Rhine river compared with the Danube?",
        ["The Rhine is a river of 1,230 kilometres."],
        ["The Rhine is a river of 1,230 kilometres. Its length is disputed."],
        rarity,
    )
    assert [t.text for t in check.missing] == ["compared", "Danube"]
    # "Danube" (in no chunk) outweighs "river" (in most): rarity, not the count of words, decides.
    weights = rarity.idf(check.terms)
    by_text = {t.text: w for t, w in weights.items()}
    assert by_text["Danube"] > by_text["Rhine"] > by_text["river"]
    assert check.missing_share == pytest.approx((by_text["compared"] + by_text["Danube"]) / sum(weights.values()))


def test_relatives_and_near_miss_text() -> None:
    [http3] = focus.terms("HTTP/3")
    text = "HTTPX supports HTTP/1.1 and HTTP/2, and HTTP/2 needs h2."
    assert focus.relatives(http3, text) == ["HTTP/1.1", "HTTP/2"]
    assert (
        focus.near_miss_text([http3], ["HTTP/1.1", "HTTP/2"])
        == "The documents mention HTTP/1.1 and HTTP/2, not HTTP/3."
    )
    [word] = focus.terms("rivers")
    assert focus.relatives(word, "rivers and streams") == []


def test_gate_passes_a_low_cosine_chunk_that_holds_the_question_s_identifier() -> None:
    text = "Several timeouts exist. If no connection is free in time, a PoolTimeout exception is raised."
    chunk = hit(1, text, "a.md", relevance=0.05, score=0.05)
    assert relevance.any_relevant([chunk], 0.25, "When is PoolTimeout raised?")
    assert not relevance.any_relevant([chunk], 0.25, "When is ReadTimeout raised?")
    # One ordinary word is no evidence: cosine decides.
    assert not relevance.any_relevant([chunk], 0.25, "timeouts?")
    assert relevance.any_relevant([chunk], 0.25, "Which exception is raised when no connection is free?")


# --- spans ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "sentence", "span"),
    [
        (
            "Which exception is raised when HTTPX cannot acquire a connection from the pool in time?",
            "If HTTPX is unable to acquire a connection within this time frame, a PoolTimeout exception is raised.",
            "PoolTimeout",
        ),
        (
            "When did the 1973 oil crisis begin?",
            "The 1973 oil crisis began in October 1973 with an embargo.",
            "October 1973",
        ),
        ("How many seats are in the chamber?", "There are 131 seats in the debating chamber.", "131"),
        ("How long is the Rhine?", "The Rhine is about 1,230 kilometres long.", "1,230"),
        ("Who gave their name to Normandy?", "The Normans gave their name to Normandy, a region in France.", "Normans"),
        (
            "Who led the conquest of England?",
            "The conquest was led by William the Conqueror in 1066.",
            "William the Conqueror",
        ),
        (
            "In what century did the Normans gain their identity?",
            "The identity of the Normans emerged in the first half of the 10th century.",
            "10th century",
        ),
        (
            # Two names, the first of them not the answer: the one beside the question's words is.
            "Who designed the bridge?",
            "Built in Glasgow for Thomas Brown, the bridge was designed by Anna Keller in 1890.",
            "Anna Keller",
        ),
        (
            # An identifier in a "who" question is its subject; the answer is a name.
            "Who did Internet2 partner with?",
            "In 2007 Internet2 formed a partnership with Juniper Networks over 10 Gbit/s links.",
            "Juniper Networks",
        ),
        (
            "What method streams a response asynchronously?",
            "Use the `AsyncClient.stream()` method.",
            "AsyncClient.stream()",
        ),
    ],
)
def test_answer_span_on_hand_checked_cases(question: str, sentence: str, span: str) -> None:
    found = answer_span(question, sentence)
    assert found is not None and found.text == span
    assert sentence[found.start : found.end] == span


@pytest.mark.parametrize(
    ("question", "row", "cell"),
    [
        ("What is the square of 13?", "Number: 13 | Square: 169", "169"),
        ("Which colour is in Column 2 of the row starting with Purple?", "Column 1: Purple | Column 2: Green", "Green"),
        ("How many leaves do berries have?", "Plant: Berries | Leaves: 50 | Roots: 3", "50"),
        ("How old is Philip Gent?", "Id: 2 | First name: Philip | Last name: Gent | Age: 36", "36"),
        ("What were Zone EUR sales in 2023?", "Zone: Zone EUR | Sales 2023: 9342 | Sales 2022: 9113", "9342"),
        ("Who scored for Rovers?", "Club: Rovers | Scorer name: Ann Lee | Goals: 3", "Ann Lee"),
    ],
)
def test_a_table_row_is_marked_in_the_cell_of_the_column_asked(question: str, row: str, cell: str) -> None:
    found = answer_span(question, row)
    assert found is not None and found.text == cell and row[found.start : found.end] == cell


def test_no_cell_is_marked_when_the_question_names_no_column() -> None:
    assert answer_span("Tell me about Rovers.", "Club: Rovers | Titles: 12") is None


@pytest.mark.parametrize(
    ("question", "sentence"),
    [
        ("Why do bees pollinate plants?", "Bees pollinate flowering plants while collecting nectar."),
        ("When did it happen?", "It happened long ago."),  # no date to mark
        ("Who wrote it?", "Nobody knows who wrote it."),
    ],
)
def test_no_span_when_nothing_stands_out(question: str, sentence: str) -> None:
    assert answer_span(question, sentence) is None


def test_marked_answer_bolds_spans_and_json_lists_them() -> None:
    answer = Answer(
        question="q",
        text="a PoolTimeout exception is raised. [1]",
        refused=False,
        citations=[],
        model="extractive",
        spans=[Span(2, 13, "PoolTimeout")],
    )
    assert answer.marked() == "a **PoolTimeout** exception is raised. [1]"
    assert answer.to_dict()["spans"] == [{"start": 2, "end": 13, "text": "PoolTimeout"}]
    assert "**PoolTimeout**" in answer._repr_markdown_()


# --- a real index -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manual(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    docs = tmp_path_factory.mktemp("manual")
    for page in (FIXTURES / "manual").glob("*.md"):
        if page.name != "SOURCE.md":
            shutil.copy(page, docs / page.name)
    store = tmp_path_factory.mktemp("store")
    engine = Engine(index="manual", store=store, embedding__embedder="local", llm__llm="none")
    engine.ingest([docs])
    return engine


@pytest.mark.slow
def test_a_near_miss_says_what_the_documents_cover(manual: Engine) -> None:
    answer = manual.ask("Does HTTPX support HTTP/3?")
    assert answer.refused
    assert answer.text == "The documents mention HTTP/1.1 and HTTP/2, not HTTP/3."
    assert answer.citations and all(Path(c.source).name == "http2.md" for c in answer.citations)
    assert answer.to_dict()["refused"] is True


@pytest.mark.slow
def test_a_term_absent_from_the_corpus_is_declined(manual: Engine) -> None:
    answer = manual.ask("Which LuaJIT version first added ARM64 support?")
    assert answer.refused and answer.citations == []
    assert answer.text == "The documents don't mention ARM64."


@pytest.mark.slow
def test_a_single_identifier_answer_is_answered_cited_and_marked(manual: Engine) -> None:
    answer = manual.ask("Which exception is raised when HTTPX cannot acquire a connection from the pool in time?")
    assert not answer.refused, answer.text
    assert "PoolTimeout" in answer.text
    assert any(Path(c.source).name == "timeouts.md" for c in answer.citations)
    assert "PoolTimeout" in [s.text for s in answer.spans]
    for span in answer.spans:
        assert answer.text[span.start : span.end] == span.text


@pytest.mark.slow
def test_questions_the_manual_does_answer_are_still_answered(manual: Engine) -> None:
    answer = manual.ask("How do I enable HTTP/2 in HTTPX?")
    assert not answer.refused, answer.text
    assert any(Path(c.source).name == "http2.md" for c in answer.citations)


@pytest.mark.slow
def test_a_follow_up_is_answered_offline_from_the_rewritten_question(manual: Engine) -> None:
    chat = manual.chat(save=False)
    first = chat.ask("How do I stream a large response body with HTTPX?")
    assert not first.refused, first.text
    assert any(Path(c.source).name == "quickstart.md" for c in first.citations)
    second = chat.ask("And how do I do that asynchronously?")
    assert not second.refused, second.text
    assert any(Path(c.source).name == "async.md" for c in second.citations)
    assert "stream" in second.text


def test_refusal_text_is_unchanged_for_plain_declines() -> None:
    # Plain declines still say the one sentence users know; near misses add what is covered.
    assert prompts.REFUSAL.startswith("Your documents don't contain")


def test_terminal_output_bolds_the_span_and_escapes_the_rest() -> None:
    from rag.cli.output import marked

    answer = Answer(
        question="q",
        text="Use [x] PoolTimeout here. [1]",
        refused=False,
        citations=[],
        model="extractive",
        spans=[Span(8, 19, "PoolTimeout")],
    )
    assert marked(answer) == "Use \\[x] [bold]PoolTimeout[/] here. [1]"


# The Zen of Python (PEP 20, public domain), without its title: as in a file that only its
# name calls "zen-of-python".
_APHORISMS = """Beautiful is better than ugly. Explicit is better than implicit. Simple is better than complex.
Complex is better than complicated. Flat is better than nested. Sparse is better than dense.
Readability counts. Special cases aren't special enough to break the rules.
Although practicality beats purity. Errors should never pass silently. Unless explicitly silenced.
In the face of ambiguity, refuse the temptation to guess.
"""


@pytest.mark.slow
@pytest.mark.parametrize(("name", "answered"), [("zen-of-python.txt", True), ("aphorisms.txt", False)])
def test_a_document_the_question_names_only_by_its_file_name_is_answered(
    tmp_path: Path, name: str, answered: bool
) -> None:
    docs = write_sample_docs(tmp_path / "docs")
    (docs / name).write_text(_APHORISMS)
    with Engine(store=tmp_path / "store", embedding__embedder="local", llm__llm="none") as engine:
        engine.ingest([docs])
        answer = engine.ask("What does the Zen of Python say about errors?")
    if answered:
        assert not answer.refused, answer.text
        assert "Errors should never pass silently." in answer.text
        assert [Path(c.source).name for c in answer.citations] == [name]
    else:  # the same page under another name: nothing says it is the Zen of Python
        assert answer.refused, answer.text


def test_a_name_is_held_only_as_itself_or_a_longer_or_shorter_form() -> None:
    evidence = focus.Evidence("Austria: Vienna | France: Paris. The Normans came from Normandy.")
    assert not evidence.has_name(focus.Term("Australia", "word"))  # five shared letters are not enough
    assert evidence.has(focus.Term("Australia", "word"))  # the loose word match still is
    assert evidence.has_name(focus.Term("Norman", "word")) and evidence.has_name(focus.Term("Austria", "word"))


def test_a_country_the_table_lacks_is_declined_and_the_collections_own_name_is_not_asked(tmp_path: Path) -> None:
    # The line above the table shares the question's words too: it must not be quoted instead.
    capitals = (
        "# Capitals of Europe\n\nSome countries and their capitals.\n\n| Country | Capital |\n|---|---|\n"
        + "".join(
            f"| {country} | {capital} |\n"
            for country, capital in [
                ("Austria", "Vienna"),
                ("France", "Paris"),
                ("Germany", "Berlin"),
                ("Spain", "Madrid"),
            ]
        )
    )
    notes = {
        f"note{i}.md": f"# Note {i}\n\nTravel note {i}: trains in Europe run often and cost little.\n"
        for i in range(30)
    }
    (tmp_path / "docs").mkdir()
    engine = offline_engine({"capitals.md": capitals, **notes}, tmp_path / "docs", tmp_path / "store", "caps")
    with engine:
        assert engine.ask("What is the capital of Australia?").refused
        answered = engine.ask("What is the capital of Austria?")
        assert not answered.refused and "Vienna" in answered.text
        # "Europe" is in most chunks (the collection's topic): a passage need not repeat it.
        rarity = engine.term_rarity()
        assert focus.missing_names("Which trains run often in Europe?", ["Trains run often."], rarity) == []
        assert focus.missing_names("Which trains run often in Spain?", ["Trains run often."], rarity) != []


def test_the_line_above_a_table_does_not_answer_for_a_country_the_table_lacks(tmp_path: Path) -> None:
    # "Some countries and their capitals." shares the question's words: it was quoted as the answer.
    capitals = (
        "# Capitals\n\nSome countries and their capitals.\n\n| Country | Capital | Population (m) |\n|---|---|---|\n"
    )
    capitals += "| France | Paris | 68 |\n| Australia | Canberra | 26 |\n| Kenya | Nairobi | 54 |\n"
    (tmp_path / "docs").mkdir()
    with offline_engine({"capitals.md": capitals}, tmp_path / "docs", tmp_path / "store", "caps") as engine:
        assert engine.ask("What is the capital of Austria?").refused
        answered = engine.ask("What is the capital of Australia?")
        assert not answered.refused and "Canberra" in answered.text
