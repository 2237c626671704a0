"""``rag serve``: one process a team can ask from a browser, their apps, or any OpenAI client.

- ``app``: the ASGI app and its cross-cutting rules (key, limits, CSP, JSON errors);
- ``api``: the REST API under ``/api/v1``; ``openai_compat``: ``/v1``;
- ``state``: the only module that talks to the engine and the store (the others use only
  rag's values: results, filters, the file-type table); ``jobs``: ingest jobs for uploads;
- ``sse``: streaming answers with heartbeats and cancellation; ``auth``: the bearer key;
- ``server``: running it with uvicorn.
"""
