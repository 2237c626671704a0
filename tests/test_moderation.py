"""``RAG_MODERATION=on``: questions and answers go through the provider's moderation endpoint
(the fake OpenAI server's ``/v1/moderations``) in ``rag ask`` and ``rag chat``.
The same gate in ``rag serve`` is tested in ``test_serve_errors.py``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest

from rag.errors import ProviderError
from rag.moderation import Moderator
from tests.conftest import Cli
from tests.openai_server import FakeOpenAI, openai_server, settings_for


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with openai_server() as server:
        server.flag("grenade", "violence")
        server.flag("insult", "harassment")
        yield server


@pytest.fixture
def moderated(docs: Path, cli: Cli, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    code, _, err = cli("ingest", str(docs), "--embedder", "hash")
    assert code == 0, err
    for name, value in {
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_API_KEY": str(fake.api_key),
        "RAG_OPENAI_MAX_RETRIES": "0",
        "RAG_MIN_SCORE": "-1",
        "RAG_MODERATION": "on",
    }.items():
        monkeypatch.setenv(name, value)
    return fake


def _chats(fake: FakeOpenAI) -> int:
    return len(fake.requests_to("/v1/chat/completions"))


def test_the_moderator_reports_flagged_categories(fake: FakeOpenAI) -> None:
    moderator = Moderator(settings_for(fake))
    verdict = moderator.check("Where can I buy a grenade to insult my neighbour?")
    assert verdict.flagged and set(verdict.categories) == {"violence", "harassment"}
    assert not moderator.check("Which volcano in Sicily is active?").flagged
    request = fake.requests_to("/v1/moderations")[-1]
    assert request.body["model"] == "omni-moderation-latest"


def test_a_provider_failure_is_an_error_not_a_pass(fake: FakeOpenAI) -> None:
    fake.error_next(500, path="/v1/moderations")
    with pytest.raises(ProviderError):
        Moderator(settings_for(fake, openai__max_retries=0)).check("anything")


def test_rag_ask_refuses_a_flagged_question_before_retrieval(moderated: FakeOpenAI, cli: Cli) -> None:
    code, out, err = cli("ask", "How do I throw a grenade at the volcano?", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["refused"] is True and data["citations"] == [] and data["refusal"] == "flagged"
    assert "flagged by moderation (violence)" in data["answer"]
    assert _chats(moderated) == 0, "a flagged question never reaches the model"


def test_rag_ask_answers_an_unflagged_question(moderated: FakeOpenAI, cli: Cli) -> None:
    moderated.reply("Mount Etna [1].")
    code, out, _ = cli("ask", "Which volcano in Sicily is active?", "--json")
    data = json.loads(out)
    assert code == 0 and data["refused"] is False and data["answer"] == "Mount Etna [1]."
    checked = [r.body["input"] for r in moderated.requests_to("/v1/moderations")]
    assert checked == ["Which volcano in Sicily is active?", "Mount Etna [1]."]


def test_a_flagged_answer_is_withheld(moderated: FakeOpenAI, cli: Cli) -> None:
    moderated.reply("Mount Etna in Sicily is an active volcano, an insult to geology.")
    code, out, _ = cli("ask", "Which volcano in Sicily is active?", "--no-stream")
    assert code == 0
    assert "The answer was withheld: moderation flagged it (harassment)." in out
    assert "insult to geology" not in out


def test_rag_chat_refuses_a_flagged_question_and_carries_on(
    moderated: FakeOpenAI, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    moderated.reply("Which volcano in Sicily is active?", "Mount Etna [1].")  # the rewrite, then the answer
    monkeypatch.setattr(sys, "stdin", StringIO("Where do I get a grenade?\nWhich volcano in Sicily is active?\n"))
    code, out, err = cli("chat", "--session", "mod")
    assert code == 0, err
    assert "flagged by moderation (violence)" in out and "Mount Etna [1]." in out
    assert _chats(moderated) == 2
