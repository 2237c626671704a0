"""Every setting rag has, in one object, and where each value came from.

Precedence, lowest to highest: built-in default, user config file (TOML), ``.env`` in the
current folder, the process environment, then explicit overrides (command-line flags or
keyword arguments).  ``Settings.sources`` records which of these supplied each value, so
``rag config`` can show it.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationError

from rag.errors import ConfigError


def _env(name: str) -> dict[str, Any]:
    return {"env": name}


def default_home() -> Path:
    """The per-user data folder, so that ``rag ask`` finds the index from any folder."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "rag"


def default_config_file() -> Path:
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "rag" / "config.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class OpenAISettings(_Section):
    api_key: SecretStr | None = Field(
        None,
        description="API key for OpenAI or a compatible server. Never printed or stored.",
        json_schema_extra=_env("OPENAI_API_KEY"),
    )
    base_url: str | None = Field(
        None,
        description="Base URL of an OpenAI-compatible server (Ollama, vLLM, llama.cpp, LM Studio).",
        json_schema_extra=_env("OPENAI_BASE_URL"),
    )
    timeout: float = Field(
        60.0, gt=0, description="Seconds to wait for one API request.", json_schema_extra=_env("RAG_OPENAI_TIMEOUT")
    )
    max_retries: int = Field(
        5,
        ge=0,
        description="Retries for 408/409/429/5xx and dropped connections, with backoff and Retry-After.",
        json_schema_extra=_env("RAG_OPENAI_MAX_RETRIES"),
    )

    @property
    def configured(self) -> bool:
        """True when an API key or a compatible server URL is set."""
        return self.api_key is not None or bool(self.base_url)


class EmbeddingSettings(_Section):
    embedder: str = Field(
        "auto",
        description=(
            "Embedder for new indexes: `local` (int8 on a CPU with VNNI or AMX, else fp32), `local:int8`, "
            "`local:fp32`, `openai`, `provider:model`, or `auto` (OpenAI when a key is set or the base URL's "
            "server embeds, else `local`). An index keeps the one it was built with."
        ),
        json_schema_extra=_env("RAG_EMBEDDER"),
    )
    openai_model: str = Field(
        "text-embedding-3-small",
        description="Embedding model used on OpenAI or a compatible server.",
        json_schema_extra=_env("RAG_EMBED_MODEL"),
    )
    concurrency: int = Field(
        4,
        ge=1,
        le=64,
        description="Embedding requests in flight at once.",
        json_schema_extra=_env("RAG_EMBED_CONCURRENCY"),
    )
    batch_size: int = Field(
        0,
        ge=0,
        description="Texts per embedding request (0: the provider's limit, 2,048 for OpenAI).",
        json_schema_extra=_env("RAG_EMBED_BATCH_SIZE"),
    )
    requests_per_minute: int = Field(
        3000,
        ge=0,
        description="Client-side cap on embedding requests per minute (0: no cap).",
        json_schema_extra=_env("RAG_EMBED_RPM"),
    )
    tokens_per_minute: int = Field(
        1_000_000,
        ge=0,
        description="Client-side cap on embedding tokens per minute (0: no cap).",
        json_schema_extra=_env("RAG_EMBED_TPM"),
    )
    threads: int = Field(
        0,
        ge=0,
        description="Batches the local model runs at once, on one CPU thread each (0: one per core).",
        json_schema_extra=_env("RAG_EMBED_THREADS"),
    )


class LLMSettings(_Section):
    # A plain string: answerers are registered in rag.answer.registry, which checks the name.
    llm: str = Field(
        "auto",
        description="Answerer: `openai` (any compatible server), `local` (a GGUF model through llama.cpp), "
        "`none` (extractive, offline), or `auto`.",
        json_schema_extra=_env("RAG_LLM"),
    )
    local_model: Path | None = Field(
        None,
        description="GGUF model file that `--llm local` serves (default: the best installed model package).",
        json_schema_extra=_env("RAG_LOCAL_MODEL"),
    )
    local_threads: int = Field(
        0,
        ge=0,
        description="CPU threads of the `--llm local` server (0: llama.cpp's default, half the cores).",
        json_schema_extra=_env("RAG_LOCAL_THREADS"),
    )
    local_idle: float = Field(
        900.0,
        gt=0,
        description="Seconds without a request after which the `--llm local` server exits.",
        json_schema_extra=_env("RAG_LOCAL_IDLE"),
    )
    chat_model: str = Field(
        "gpt-4o-mini", description="Chat model that writes answers.", json_schema_extra=_env("RAG_CHAT_MODEL")
    )
    temperature: float = Field(
        0.0, ge=0, le=2, description="Sampling temperature for answers.", json_schema_extra=_env("RAG_TEMPERATURE")
    )
    max_answer_tokens: int = Field(
        1024,
        ge=16,
        description="Tokens reserved for the answer when fitting context into the window.",
        json_schema_extra=_env("RAG_MAX_ANSWER_TOKENS"),
    )
    context_window: int | None = Field(
        None,
        ge=512,
        description="Context window of the chat model, for models rag does not know (e.g. on Ollama).",
        json_schema_extra=_env("RAG_CONTEXT_WINDOW"),
    )
    quote_fallback: bool = Field(
        True,
        description="`on`: when no sentence of the model's answer is backed by its sources, quote the "
        "sources instead (labelled), and let them check a passage the model copied; `off`: decline, "
        "and keep copied passages.",
        json_schema_extra=_env("RAG_QUOTE_FALLBACK"),
    )
    moderation: bool = Field(
        False,
        description="`on`: check questions and answers with the provider's moderation endpoint first.",
        json_schema_extra=_env("RAG_MODERATION"),
    )
    moderation_model: str = Field(
        "omni-moderation-latest",
        description="Moderation model used when `RAG_MODERATION` is on.",
        json_schema_extra=_env("RAG_MODERATION_MODEL"),
    )


class StoreSettings(_Section):
    home: Path = Field(
        default_factory=default_home,
        description="Folder holding indexes, caches and chat sessions.",
        json_schema_extra=_env("RAG_HOME"),
    )
    chroma_url: str | None = Field(
        None,
        description="URL of a Chroma server (`http://host:port`); unset runs Chroma embedded.",
        json_schema_extra=_env("RAG_CHROMA_URL"),
    )
    index: str = Field("default", description="Index used when none is named.", json_schema_extra=_env("RAG_INDEX"))
    lock_timeout: float = Field(
        10.0,
        ge=0,
        description="Seconds an ingest waits for another writer of the same index before giving up.",
        json_schema_extra=_env("RAG_LOCK_TIMEOUT"),
    )
    lease_ttl: float = Field(
        60.0,
        gt=0,
        description="Seconds a writer's lease on a Chroma server index outlives its last renewal (a crashed writer "
        "blocks others this long).",
        json_schema_extra=_env("RAG_LEASE_TTL"),
    )


class IngestSettings(_Section):
    follow_links: bool = Field(
        False,
        description="Follow symlinks that lead out of an ingested folder (off: they are skipped and reported).",
        json_schema_extra=_env("RAG_FOLLOW_LINKS"),
    )
    max_file_mb: float = Field(
        100.0,
        gt=0,
        description="Files larger than this are skipped and reported.",
        json_schema_extra=_env("RAG_MAX_FILE_MB"),
    )
    chunk_tokens: int = Field(
        0,
        ge=0,
        description="Target chunk size in embedder tokens (0: the embedder's own default).",
        json_schema_extra=_env("RAG_CHUNK_TOKENS"),
    )
    chunk_overlap: float = Field(
        0.15,
        ge=0,
        lt=0.5,
        description="Share of a chunk repeated at the start of the next one.",
        json_schema_extra=_env("RAG_CHUNK_OVERLAP"),
    )
    ocr: Literal["auto", "never", "always"] = Field(
        "auto",
        description="OCR with Tesseract: scanned PDF pages and images (auto), nothing (never), or every page (always).",
        json_schema_extra=_env("RAG_OCR"),
    )
    parse_timeout: float = Field(
        60.0,
        gt=0,
        description="Seconds one file may take to parse before it is stopped and reported.",
        json_schema_extra=_env("RAG_PARSE_TIMEOUT"),
    )
    parse_memory_mb: int = Field(
        2048,
        ge=0,
        description="Memory one parse worker may use, in MB (0: no limit).",
        json_schema_extra=_env("RAG_PARSE_MEMORY_MB"),
    )
    parse_workers: int = Field(
        0,
        ge=0,
        description="Processes parsing files in parallel (0: half the cores, at most 4).",
        json_schema_extra=_env("RAG_PARSE_WORKERS"),
    )


class RetrievalSettings(_Section):
    mode: Literal["dense", "keyword", "hybrid"] = Field(
        "hybrid", description="Retrieval method.", json_schema_extra=_env("RAG_MODE")
    )
    k: int = Field(5, ge=1, le=1000, description="Chunks retrieved per question.", json_schema_extra=_env("RAG_TOP_K"))
    mmr: bool = Field(
        False, description="Diversify results with maximal marginal relevance.", json_schema_extra=_env("RAG_MMR")
    )
    mmr_lambda: float = Field(
        0.7,
        ge=0,
        le=1,
        description="MMR trade-off: 1 is pure relevance, 0 pure diversity.",
        json_schema_extra=_env("RAG_MMR_LAMBDA"),
    )
    rerank: str | None = Field(
        None,
        description="Stages that reorder the candidates before the top k are kept, in order, comma-separated:"
        " `mmr`, or a `module:function` of your own (see rag/retrieve/stages.py).",
        json_schema_extra=_env("RAG_RERANK"),
    )
    min_score: float | None = Field(
        None,
        description="Relevance below which `ask` declines (unset: the embedder's calibrated default).",
        json_schema_extra=_env("RAG_MIN_SCORE"),
    )


class ServeSettings(_Section):
    api_key: SecretStr | None = Field(
        None,
        description="Key `rag serve` requires as `Authorization: Bearer KEY` (required off loopback). Never printed.",
        json_schema_extra=_env("RAG_API_KEY"),
    )
    max_upload_mb: float = Field(
        100.0,
        gt=0,
        description="Largest request body `rag serve` accepts (uploads), in MB; larger ones get 413.",
        json_schema_extra=_env("RAG_MAX_UPLOAD_MB"),
    )


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: float = Field(description="USD per million input tokens.")
    output: float = Field(0.0, description="USD per million output tokens.")


def _default_prices() -> dict[str, Price]:
    # USD per million tokens, OpenAI's list prices; override in the config file's [prices] table.
    table = {
        "text-embedding-3-small": (0.02, 0.0),
        "text-embedding-3-large": (0.13, 0.0),
        "text-embedding-ada-002": (0.10, 0.0),
        "gpt-4o-mini": (0.15, 0.60),
        "gpt-4o": (2.50, 10.00),
        "gpt-4.1-mini": (0.40, 1.60),
        "gpt-4.1-nano": (0.10, 0.40),
        "gpt-4.1": (2.00, 8.00),
    }
    return {name: Price(input=i, output=o) for name, (i, o) in table.items()}


class Settings(_Section):
    """All of rag's settings.  Build with ``Settings.load()``; copy with ``with_options()``."""

    openai: OpenAISettings = Field(default_factory=OpenAISettings)  # type: ignore[arg-type]
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)  # type: ignore[arg-type]
    llm: LLMSettings = Field(default_factory=LLMSettings)  # type: ignore[arg-type]
    store: StoreSettings = Field(default_factory=StoreSettings)  # type: ignore[arg-type]
    ingest: IngestSettings = Field(default_factory=IngestSettings)  # type: ignore[arg-type]
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)  # type: ignore[arg-type]
    serve: ServeSettings = Field(default_factory=ServeSettings)  # type: ignore[arg-type]
    prices: dict[str, Price] = Field(
        default_factory=_default_prices, description="Price per million tokens, by model name."
    )

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def sources(self) -> dict[str, str]:
        """Where each non-default value came from, by dotted name (``llm.chat_model``)."""
        return dict(self._sources)

    @classmethod
    def load(
        cls,
        overrides: Mapping[str, Any] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        config_file: Path | None = None,
        dotenv: Path | None = Path(".env"),
    ) -> Settings:
        """Settings from defaults, config file, ``.env``, environment, then ``overrides``.

        ``overrides`` maps dotted names (``"llm.chat_model"``) to values; ``None`` values are
        ignored so that unset command-line flags fall through.
        """
        environ = os.environ if environ is None else environ
        layers: list[tuple[str, dict[str, Any]]] = []

        path = config_file or Path(environ.get("RAG_CONFIG") or default_config_file())
        if path.is_file():
            layers.append((f"config file {path}", _read_config_file(path)))
        if dotenv is not None and dotenv.is_file():
            layers.append((".env", _from_env(_read_dotenv(dotenv))))
        layers.append(("environment", _from_env(environ)))
        if overrides:
            layers.append(("argument", {k: v for k, v in overrides.items() if v is not None}))

        merged: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for origin, values in layers:
            for dotted, value in values.items():
                _set_dotted(merged, dotted, value)
                env_name = ENV_NAMES.get(dotted)
                sources[dotted] = f"env {env_name}" if origin == "environment" and env_name else origin
        if "prices" in merged:
            defaults = {name: price.model_dump() for name, price in _default_prices().items()}
            merged["prices"] = {**defaults, **merged["prices"]}
        try:
            settings = cls.model_validate(merged)
        except ValidationError as exc:
            raise ConfigError(_first_error(exc, sources)) from None
        settings._sources = sources
        return settings

    def with_options(self, **overrides: Any) -> Settings:
        """A copy with some values replaced; keys are dotted names with ``__`` for dots."""
        data = self.model_dump()
        data["openai"]["api_key"] = self.openai.api_key
        data["serve"]["api_key"] = self.serve.api_key
        sources = dict(self._sources)
        for key, value in overrides.items():
            if value is None:
                continue
            dotted = key.replace("__", ".")
            _set_dotted(data, dotted, value)
            sources[dotted] = "argument"
        try:
            settings = type(self).model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_first_error(exc, sources)) from None
        settings._sources = sources
        return settings

    def describe(self) -> list[dict[str, Any]]:
        """One row per setting: name, value (secrets masked), env var, source, description."""
        rows = []
        for section_name in type(self).model_fields:
            section = getattr(self, section_name)
            if not isinstance(section, BaseModel):
                continue
            for name, field in type(section).model_fields.items():
                dotted = f"{section_name}.{name}"
                value = getattr(section, name)
                if isinstance(value, SecretStr):
                    value = "********"
                elif isinstance(value, Path):
                    value = str(value)
                rows.append(
                    {
                        "name": dotted,
                        "value": value,
                        "env": ENV_NAMES.get(dotted),
                        "source": self._sources.get(dotted, "default"),
                        "description": field.description or "",
                    }
                )
        return rows


def _collect_env_names() -> dict[str, str]:
    names = {}
    for section_name, section_field in Settings.model_fields.items():
        section_type = section_field.annotation
        if not (isinstance(section_type, type) and issubclass(section_type, _Section)):
            continue
        for name, field in section_type.model_fields.items():
            extra = field.json_schema_extra
            if isinstance(extra, dict) and "env" in extra:
                names[f"{section_name}.{name}"] = str(extra["env"])
    return names


ENV_NAMES: dict[str, str] = _collect_env_names()
"""Dotted setting name to its environment variable."""


def _from_env(environ: Mapping[str, str | None]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for dotted, env_name in ENV_NAMES.items():
        raw = environ.get(env_name)
        if raw is not None and raw.strip() != "":
            values[dotted] = raw.strip()
    return values


def _read_dotenv(path: Path) -> dict[str, str | None]:
    from dotenv import dotenv_values

    return dict(dotenv_values(path))


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    if any("api_key" in data.get(section, {}) for section in ("openai", "serve")):
        # Keys belong in the environment or a keyring, never in a file we tell people to share.
        raise ConfigError(f"{path}: put the API key in OPENAI_API_KEY or .env, not in the config file")
    values: dict[str, Any] = {}
    for section, table in data.items():
        if section == "prices" or not isinstance(table, dict):
            values[section] = table
            continue
        for name, value in table.items():
            values[f"{section}.{name}"] = value
    return values


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    head, _, rest = dotted.partition(".")
    if not rest:
        target[head] = value
        return
    child = target.setdefault(head, {})
    if isinstance(child, BaseModel):
        child = child.model_dump()
        target[head] = child
    _set_dotted(child, rest, value)


def _first_error(exc: ValidationError, sources: Mapping[str, str]) -> str:
    err = exc.errors()[0]
    dotted = ".".join(str(p) for p in err["loc"])
    where = sources.get(dotted)
    env_name = ENV_NAMES.get(dotted)
    label = env_name if where and where.startswith("env") and env_name else dotted
    suffix = f" (from {where})" if where else ""
    return f"invalid setting {label}: {err['msg']}{suffix}"
