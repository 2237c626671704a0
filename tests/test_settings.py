from __future__ import annotations

from pathlib import Path

import pytest

from rag.errors import ConfigError
from rag.settings import ENV_NAMES, Settings


def test_defaults_without_any_configuration(isolated: Path) -> None:
    settings = Settings.load()
    assert settings.llm.chat_model == "gpt-4o-mini"
    assert settings.embedding.openai_model == "text-embedding-3-small"
    assert settings.store.home == isolated  # RAG_HOME from the isolation fixture
    assert not settings.openai.configured
    assert settings.sources == {"store.home": "env RAG_HOME"}


def test_precedence_config_file_then_dotenv_then_env_then_arguments(tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[llm]\nchat_model = "from-file"\ntemperature = 0.3\n[retrieval]\nk = 3\n')
    (tmp_path / ".env").write_text("RAG_CHAT_MODEL=from-dotenv\nRAG_TOP_K=4\n")
    monkeypatch.setenv("RAG_TOP_K", "6")
    settings = Settings.load({"retrieval.mmr": True}, config_file=config, dotenv=tmp_path / ".env")
    assert settings.llm.temperature == 0.3
    assert settings.llm.chat_model == "from-dotenv"
    assert settings.retrieval.k == 6
    assert settings.retrieval.mmr is True
    assert settings.sources["llm.temperature"].startswith("config file")
    assert settings.sources["llm.chat_model"] == ".env"
    assert settings.sources["retrieval.k"] == "env RAG_TOP_K"
    assert settings.sources["retrieval.mmr"] == "argument"


def test_with_options_overrides_per_call_and_keeps_the_key(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-keep-me")
    settings = Settings.load()
    copy = settings.with_options(retrieval__k=9, llm__chat_model="gpt-4.1-mini")
    assert (copy.retrieval.k, copy.llm.chat_model) == (9, "gpt-4.1-mini")
    assert settings.retrieval.k == 5
    assert copy.openai.api_key is not None
    assert copy.openai.api_key.get_secret_value() == "sk-test-keep-me"


def test_invalid_values_name_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("RAG_TOP_K", "many")
    with pytest.raises(ConfigError, match="RAG_TOP_K"):
        Settings.load()


def test_api_key_is_masked_in_describe_and_refused_in_config_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret-value")
    rows = Settings.load().describe()
    assert "sk-very-secret-value" not in repr(rows)
    key_row = next(r for r in rows if r["name"] == "openai.api_key")
    assert key_row["value"] == "********" and key_row["source"] == "env OPENAI_API_KEY"

    config = tmp_path / "config.toml"
    config.write_text('[openai]\napi_key = "sk-in-a-file"\n')
    with pytest.raises(ConfigError, match="not in the config file"):
        Settings.load(config_file=config)


def test_price_table_override_keeps_other_models(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[prices]\n"llama3" = { input = 0.0, output = 0.0 }\n"gpt-4o-mini" = { input = 1.0, output = 2.0 }\n'
    )
    prices = Settings.load(config_file=config).prices
    assert prices["gpt-4o-mini"].input == 1.0
    assert prices["llama3"].output == 0.0
    assert "text-embedding-3-small" in prices


def test_every_field_has_an_environment_variable_and_description() -> None:
    rows = Settings().describe()
    assert rows, "no settings described"
    for row in rows:
        assert row["env"], f"{row['name']} has no environment variable"
        assert row["description"], f"{row['name']} has no description"
    assert len(set(ENV_NAMES.values())) == len(ENV_NAMES)
