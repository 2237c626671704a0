"""The extractive answerer: sentence splitting and selection, then real documents with the real local model."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag import prompts
from rag.answer.extractive import (
    ExtractiveAnswerer,
    Scored,
    Sentence,
    answer_pattern,
    candidates,
    compose,
    content_words,
    coverage,
    negated,
    plain,
    segments,
    select,
    specificity,
    split_sentences,
)
from rag.answer.layout import fences
from rag.embed import factory
from rag.engine import Engine
from rag.home import Store
from rag.results import Hit
from rag.settings import Settings
from tests.conftest import HashEmbedder
from tests.helpers import hit
from tests.sample_docs import offline_engine

# --- sentences --------------------------------------------------------------------------------


def sentences(text: str) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text)]


def test_split_sentences_keeps_spans_and_skips_abbreviations() -> None:
    text = 'Dr. Smith met J. R. R. Tolkien in the U.S. Army.  He said: "Hello!" Then left.\n\n- a list item\n- another'
    assert sentences(text) == [
        "Dr. Smith met J. R. R. Tolkien in the U.S. Army.",
        'He said: "Hello!"',
        "Then left.",
        "- a list item",
        "- another",
    ]


def test_split_sentences_handles_wrapped_lines_and_empty_text() -> None:
    assert sentences("A sentence that wraps\nonto the next line. Another one? Yes.") == [
        "A sentence that wraps\nonto the next line.",
        "Another one?",
        "Yes.",
    ]
    assert sentences("   \n\n ") == []
    assert sentences("no end punctuation") == ["no end punctuation"]


def test_a_bracketed_aside_stays_with_the_sentence_it_follows() -> None:
    # A manual's option list: the default, in brackets on the next line, is what is asked.
    text = "- `pool_size`, most connections kept, or `None` for none.\n(Default 10)\n- `ttl`, idle time. (Default 5)"
    assert sentences(text) == [
        "- `pool_size`, most connections kept, or `None` for none.\n(Default 10)",
        "- `ttl`, idle time. (Default 5)",
    ]
    apart = "It ends here.\n\n(A note of its own.) Next."  # a paragraph of its own stays apart
    assert sentences(apart) == ["It ends here.", "(A note of its own.)", "Next."]


def test_code_is_quoted_only_with_the_sentence_that_leads_to_it() -> None:
    text = (
        "## Turning it off\n\nOr turn the limit off for one call:\n\n```python\nfetch(url, limit=None)\n```\n\n"
        "Example output.\n\n```console\n20:54:17.651 - pool - connected version='2'\n```"
    )
    found = [s.text for s in candidates([hit(1, text, "guide.md")])]
    assert found == ["Or turn the limit off for one call: ```python fetch(url, limit=None) ```", "Example output."]
    # A chunk may start inside a block (its first fence closes it) or end inside one.
    cut = "value=1)\n```\n\nSet it like this:\n\n```python\nclient = Client(\n    limit=None"
    assert [cut[a:b] for a, b in fences(cut)] == ["value=1)\n```", "```python\nclient = Client(\n    limit=None"]
    assert [s.text for s in candidates([hit(1, cut, "guide.md")])] == [
        "Set it like this: ```python client = Client( limit=None"
    ]


def test_a_section_titled_by_an_identifier_names_it_in_its_sentences() -> None:
    section = Hit(1, 1.0, "c1", "settings.md", None, "Settings > `CACHE_TTL`", "If this variable is set, keys expire.")
    assert [s.text for s in candidates([section])] == ["`CACHE_TTL`: If this variable is set, keys expire."]
    named = Hit(1, 1.0, "c1", "settings.md", None, "Settings > `CACHE_TTL`", "Set `CACHE_TTL` to expire entries.")
    assert [s.text for s in candidates([named])] == ["Set `CACHE_TTL` to expire entries."]  # named already


def test_template_markup_is_not_quoted() -> None:
    assert plain('{{% note %}} Settings live in `app.toml`, see [the CLI]({{< relref "cli" >}}). {{% /note %}}') == (
        "Settings live in `app.toml`, see the CLI."
    )
    assert plain('!!! note "TL;DR" Use a `Client` instance.') == "Use a `Client` instance."


def test_content_words_drop_stopwords_and_stem() -> None:
    assert content_words("What were the names of the rivers?") == {"river"}
    question = content_words("When did the Normans conquer England?")
    assert coverage(question, content_words("The Normans conquered England in 1066.")) == 1.0
    assert coverage(question, content_words("The Danes conquered England.")) == pytest.approx(2 / 3)


def test_coverage_weighs_the_words_few_retrieved_sentences_share_most() -> None:
    # Every sentence names the topic; one says what the question asks about it.
    topic = [f"Boots self-locking nuts are used in case {n}." for n in range(8)]
    retrieved = [*topic, "Wing-type nuts are made of aluminum.", "Springs are made of steel."]
    words = [content_words(s) for s in retrieved]
    question = content_words("What are wing-type Boots self-locking nuts made of?")
    weights = specificity(question, words)
    assert weights["wing"] > weights["made"] > weights["boot"]
    on_topic, specific = words[0], words[8]
    assert coverage(question, on_topic) > coverage(question, specific)  # counted alike, the topic wins
    assert coverage(question, specific, weights) > coverage(question, on_topic, weights)


def test_candidates_skip_headings_fragments_and_repeats() -> None:
    hits = [
        hit(1, "of the river, which floods. The river is long. It ends in a delta at the sea, where"),
        hit(2, "# Rivers\n\nThe river is long. Deltas are flat."),
    ]
    assert [s.text for s in candidates(hits)] == ["The river is long.", "Deltas are flat."]
    assert [s.hit_index for s in candidates(hits)] == [0, 1]


def test_each_table_row_is_a_sentence_of_its_own() -> None:
    text = "Costs were low. See the table.\nItem: Boat | Cost: 4,200 EUR\nItem: Gear | Cost: 1,150 EUR\nAll paid."
    found = [(text[s:e], row) for s, e, row in segments(text)]
    assert found == [
        ("Costs were low.", False),
        ("See the table.", False),
        ("Item: Boat | Cost: 4,200 EUR", True),
        ("Item: Gear | Cost: 1,150 EUR", True),
        ("All paid.", False),
    ]
    rows = "# In millions of CHF\nZone: EUR | Sales: 9\nZone: AMS | Sales: 8"
    sheet = Hit(1, 1.0, "c1", "t.xlsx", None, "Zones > rows 6-7", rows)
    assert [s.text for s in candidates([sheet])] == ["Zone: EUR | Sales: 9", "Zone: AMS | Sales: 8"]  # not the title


def test_rows_quoted_from_two_sheets_name_them() -> None:
    hits = [
        Hit(1, 1.0, "c1", "t.xlsx", None, "Cubes > rows 2-3", "Number: 13 | Cube: 2197"),
        Hit(2, 0.9, "c2", "t.xlsx", None, "Squares > rows 2-3", "Number: 13 | Square: 169"),
    ]
    both = [scored(0, hits, "Number: 13 | Cube: 2197", 0.9), scored(1, hits, "Number: 13 | Square: 169", 0.8)]
    text, _ = compose(both, hits)
    assert text == "Cubes: Number: 13 | Cube: 2197 [1]\n\nSquares: Number: 13 | Square: 169 [2]"
    assert compose(both[:1], hits)[0] == "Number: 13 | Cube: 2197 [1]"  # one sheet: the citation says it
    table = [Hit(1, 1.0, "c1", "t.csv", None, "rows 2-4", "a: 1 | b: 2\na: 3 | b: 4\na: 5 | b: 6")]
    rows = [scored(0, table, "a: 5 | b: 6", 0.9), scored(0, table, "a: 1 | b: 2", 0.88)]
    assert compose(rows, table)[0] == "a: 1 | b: 2\na: 5 | b: 6 [1]"  # a row a line


def test_negation_and_answer_types() -> None:
    assert negated("Which king did not sign it?") and negated("Why didn't it work?")
    assert not negated("Which king signed it?") and not negated("Is Notre-Dame in the north?")
    when = answer_pattern("When did the war end?")
    assert when is not None and when.search("It ended in 1945.") and when.search("It ended in May.")
    assert not when.search("It may have ended.")  # "may" the verb is no date
    many = answer_pattern("How many ships sank?")
    assert many is not None and many.search("Twelve ships sank.") and not many.search("Ships sank.")
    assert answer_pattern("Why did the war end?") is None


def test_a_negated_question_is_answered_only_by_a_negated_sentence(settings: Settings) -> None:
    hits = [hit(1, "The king signed the treaty in 1215. The barons did not sign the treaty.")]
    answerer = ExtractiveAnswerer(settings, embedder=HashEmbedder, min_relevance=0.0)
    scored = answerer.score_sentences("Who did not sign the treaty?", hits, HashEmbedder())
    assert [s.sentence.text for s in scored] == ["The barons did not sign the treaty."]


class ApiEmbedder(HashEmbedder):
    runs_locally = False


def test_sentences_are_scored_locally_when_the_index_uses_an_api_embedder(request: pytest.FixtureRequest) -> None:
    request.addfinalizer(factory.register("api", lambda model, settings: ApiEmbedder(model, provider="api")).undo)
    request.addfinalizer(factory.register("local", lambda model, settings: HashEmbedder(model, provider="local")).undo)
    store = Store()
    api = store.index("paid", embedding__embedder="api").answerer("none")
    own = store.index("free", embedding__embedder="hash").answerer("none")
    assert isinstance(api, ExtractiveAnswerer) and isinstance(own, ExtractiveAnswerer)
    assert api._embedder().name == "local:all-MiniLM-L6-v2"  # the fp32 model, whatever the CPU
    assert own._embedder() is store.embedder("hash:v1")


# --- selection and composition ----------------------------------------------------------------


def scored(hit_index: int, hits: list[Hit], sentence: str, score: float) -> Scored:
    start = hits[hit_index].text.index(sentence)
    return Scored(Sentence(hit_index, start, start + len(sentence), sentence), score)


def test_select_takes_the_best_and_close_seconds_only() -> None:
    hits = [hit(1, "A one. A two. A three. A four.")]
    ranked = [scored(0, hits, s, v) for s, v in [("A one.", 0.9), ("A two.", 0.88), ("A three.", 0.7)]]
    assert [s.sentence.text for s in select(ranked, 0.5)] == ["A one.", "A two."]
    assert select(ranked, 0.95) == []
    assert select([], 0.0) == []


def test_compose_groups_by_source_in_document_order() -> None:
    hits = [hit(1, "First fact. Filler. Second fact."), hit(2, "Other fact.", source="b.txt")]
    chosen = [
        scored(0, hits, "Second fact.", 0.9),
        scored(1, hits, "Other fact.", 0.85),
        scored(0, hits, "First fact.", 0.8),
    ]
    text, cited = compose(chosen, hits)
    assert text == "First fact. … Second fact. [1]\n\nOther fact. [2]"
    assert cited == [1, 2]


def test_answer_with_the_hash_embedder_cites_the_chunk_it_quotes(settings: Settings) -> None:
    hits = [
        hit(1, "Honey bees live in colonies. Each colony has a single queen."),
        hit(2, "Mount Etna is an active volcano in Sicily.", source="etna.txt"),
    ]
    answerer = ExtractiveAnswerer(settings, embedder=HashEmbedder, min_relevance=0.1)
    deltas: list[str] = []
    answer = answerer.answer("Where is the volcano Mount Etna?", hits, on_delta=deltas.append)
    assert not answer.refused and answer.answerer == "extractive" and answer.model == "extractive"
    assert "Mount Etna is an active volcano in Sicily. [2]" in answer.text
    assert [c.n for c in answer.citations] == [2] and answer.citations[0].source == "etna.txt"
    assert deltas == [answer.text] and answer.context == hits
    assert answerer.answer("x", []).text == prompts.NO_SOURCES


# --- real documents, the real local model -----------------------------------------------------

CORPUS = {
    "apollo.txt": (
        "Apollo 11 was the American spaceflight that first landed humans on the Moon. Commander Neil "
        "Armstrong and lunar module pilot Buzz Aldrin landed the Apollo Lunar Module Eagle on July 20, 1969. "
        "Armstrong became the first person to step onto the lunar surface six hours later. Michael Collins "
        "flew the command module Columbia alone in lunar orbit while they were on the surface.\n\n"
        "The astronauts collected 21.5 kilograms of lunar material to bring back to Earth. The mission was "
        "launched by a Saturn V rocket from Kennedy Space Center in Florida on July 16, 1969."
    ),
    "rhine.md": (
        "# The Rhine\n\nThe Rhine is one of the major European rivers. It begins in the Swiss canton of "
        "Graubünden in the southeastern Swiss Alps and flows mostly northwards. It forms part of the "
        "Swiss-Austrian and Swiss-Liechtenstein borders, then the Swiss-German and Franco-German borders, "
        "before flowing through Germany and the Netherlands into the North Sea near Rotterdam.\n\n"
        "## Length\n\nThe Rhine is about 1,230 kilometres long. It is the second-longest river in Central "
        "and Western Europe, after the Danube."
    ),
    "bread.txt": (
        "Sourdough bread is made by the fermentation of dough using naturally occurring lactobacilli and "
        "yeast. The lactic acid produced by the lactobacilli gives it a more sour taste and improved keeping "
        "qualities. A sourdough starter is kept alive by regular feeding with flour and water."
    ),
    "photosynthesis.txt": (
        "Photosynthesis is the process by which plants, algae and some bacteria convert light energy into "
        "chemical energy. Most photosynthetic organisms release oxygen as a by-product. In plants, "
        "photosynthesis takes place mainly in the chloroplasts of leaf cells, which contain chlorophyll."
    ),
}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return offline_engine(CORPUS, tmp_path_factory.mktemp("corpus"), tmp_path_factory.mktemp("store"), "corpus")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("question", "expected", "source"),
    [
        ("When did Apollo 11 land on the Moon?", "July 20, 1969", "apollo.txt"),
        ("Who flew the command module while the others were on the surface?", "Michael Collins", "apollo.txt"),
        ("How long is the Rhine?", "1,230 kilometres", "rhine.md"),
        ("Where in the plant cell does photosynthesis happen?", "chloroplasts", "photosynthesis.txt"),
    ],
)
def test_answers_from_the_right_document(engine: Engine, question: str, expected: str, source: str) -> None:
    answer = engine.ask(question)
    assert answer.answerer == "extractive" and not answer.refused, answer.text
    assert expected in answer.text
    assert any(Path(c.source).name == source and expected in c.text for c in answer.citations)
    for c in answer.citations:
        assert f"[{c.n}]" in answer.text


@pytest.mark.slow
@pytest.mark.parametrize(
    "question",
    [
        "Who won the 2010 FIFA World Cup final?",
        "What is the interest rate of a typical mortgage?",
        "How do I configure a Kubernetes ingress controller?",
    ],
)
def test_declines_questions_the_documents_do_not_answer(engine: Engine, question: str) -> None:
    answer = engine.ask(question)
    assert answer.refused, answer.text
    assert answer.text == prompts.REFUSAL and answer.citations == []
    assert answer.refusal in ("not_relevant", "not_found")  # the documents' silence, not a failure
