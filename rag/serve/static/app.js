// rag's page: chat with streamed answers, a source pane that opens cited passages, sessions
// and documents.  Plain JavaScript, no build step, no third-party code.
//
// Safety rule: text that comes from documents, answers or the server goes into the page
// through textContent / createTextNode only, never innerHTML.
"use strict";

(() => {
  const API = "/api/v1";
  const KEY_NAME = "rag.apiKey";
  const INDEX_NAME = "rag.index";
  const SESSION_PREFIX = "rag.session.";
  const NEW_INDEX = "__new__"; // the "New index…" option: index names start with a letter or digit

  const state = {
    index: null,        // selected index name
    session: null,      // current session name, or null for a new chat
    controller: null,   // AbortController of the answer being streamed
    keyPrompt: null,    // pending promise while the key dialog is open
    indexes: new Set(), // indexes that exist on the server (a new one exists after its first upload)
  };

  const $ = (id) => document.getElementById(id);

  // --- small DOM helpers ---------------------------------------------------------------

  /** An element with a class and children; strings become text nodes, never HTML. */
  function el(tag, className, ...children) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function basename(path) {
    const parts = String(path || "").split(/[\\/]/);
    return parts[parts.length - 1] || String(path || "");
  }

  function plural(n, word) {
    return `${n} ${word}${n === 1 ? "" : "s"}`;
  }

  let toastTimer = null;
  function toast(message) {
    const box = $("toast");
    box.textContent = message;
    box.classList.remove("hidden");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => box.classList.add("hidden"), 6000);
  }

  // --- the API key -----------------------------------------------------------------------

  function storedKey() {
    return sessionStorage.getItem(KEY_NAME) || localStorage.getItem(KEY_NAME) || "";
  }

  /** Show the key dialog once, however many requests are waiting for it. */
  function askForKey(message) {
    if (state.keyPrompt) return state.keyPrompt;
    const dialog = $("key-dialog");
    const error = $("key-error");
    error.textContent = message || "";
    error.classList.toggle("hidden", !message);
    $("key-input").value = "";
    state.keyPrompt = new Promise((resolve) => {
      const form = $("key-form");
      const onSubmit = (event) => {
        event.preventDefault();
        const key = $("key-input").value.trim();
        if (!key) return;
        sessionStorage.setItem(KEY_NAME, key);
        if ($("key-remember").checked) localStorage.setItem(KEY_NAME, key);
        else localStorage.removeItem(KEY_NAME);
        form.removeEventListener("submit", onSubmit);
        dialog.close();
        state.keyPrompt = null;
        $("key-button").classList.remove("hidden");
        resolve(key);
      };
      form.addEventListener("submit", onSubmit);
      // The key is required: Esc must not leave the page half-working.
      dialog.addEventListener("cancel", (event) => event.preventDefault());
      dialog.showModal();
      $("key-input").focus();
    });
    return state.keyPrompt;
  }

  // --- HTTP ------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  async function errorOf(response) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && typeof body.error === "string") message = body.error;
      else if (body && typeof body.detail === "string") message = body.detail;
    } catch (_) {
      // not JSON: keep the status line
    }
    return new ApiError(message, response.status);
  }

  /** fetch under /api/v1 with the key; a 401 asks for the key and retries. */
  async function api(path, options = {}) {
    for (let attempt = 0; ; attempt++) {
      const headers = new Headers(options.headers || {});
      const key = storedKey();
      if (key) headers.set("Authorization", `Bearer ${key}`);
      const response = await fetch(API + path, { ...options, headers });
      if (response.status === 401 && attempt < 5) {
        const hadKey = Boolean(key);
        sessionStorage.removeItem(KEY_NAME);
        localStorage.removeItem(KEY_NAME);
        await askForKey(hadKey ? "That key was not accepted." : "");
        continue;
      }
      if (!response.ok) throw await errorOf(response);
      return response;
    }
  }

  async function apiJson(path, options = {}) {
    const response = await api(path, options);
    return response.status === 204 ? null : response.json();
  }

  function postJson(path, body, options = {}) {
    return api(path, {
      method: "POST",
      ...options,
      headers: { "Content-Type": "application/json", ...(options.headers || {}) },
      body: JSON.stringify(body),
    });
  }

  function indexQuery(extra = "") {
    return `index=${encodeURIComponent(state.index || "")}${extra}`;
  }

  /**
   * Server-sent events from a fetch response: yields {event, data} with data parsed as JSON.
   * EventSource cannot POST or send headers, hence this reader.
   */
  async function* readEvents(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      // A "\r" at the end may be the first half of "\r\n": wait for the next chunk.
      const keep = buffer.endsWith("\r") ? "\r" : "";
      const text = (keep ? buffer.slice(0, -1) : buffer).replace(/\r\n?/g, "\n");
      const blocks = text.split("\n\n");
      buffer = blocks.pop() + keep;
      for (const block of blocks) {
        const parsed = parseEvent(block);
        if (parsed) yield parsed;
      }
    }
    const last = parseEvent(buffer.replace(/\r\n?/g, "\n"));
    if (last) yield last;
  }

  function parseEvent(block) {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue; // comments are heartbeats
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length) return null;
    const raw = data.join("\n");
    try {
      return { event, data: JSON.parse(raw) };
    } catch (_) {
      return { event, data: raw };
    }
  }

  // --- indexes ---------------------------------------------------------------------------

  async function loadIndexes() {
    const body = await apiJson("/indexes");
    const names = (body.indexes || []).map((i) => i.name);
    state.indexes = new Set(names);
    const select = $("index-select");
    select.replaceChildren();
    const saved = localStorage.getItem(INDEX_NAME);
    const current = state.index || saved || body.default;
    const all = names.length ? names : [body.default || "default"];
    if (current && !all.includes(current)) all.push(current);
    for (const name of all) {
      const meta = (body.indexes || []).find((i) => i.name === name);
      const option = el("option", null, name);
      option.value = name;
      if (meta) option.title = `${meta.files} files, ${meta.chunks} chunks, ${meta.embedder}`;
      select.append(option);
    }
    const create = el("option", null, "New index…");
    create.value = NEW_INDEX;
    select.append(create);
    state.index = current && all.includes(current) ? current : all[0];
    select.value = state.index;
  }

  /** "New index…": ask for a name; the index exists once something is uploaded to it. */
  function newIndex() {
    const dialog = $("index-dialog");
    const select = $("index-select");
    select.value = state.index; // until a name is given
    $("index-name").value = "";
    dialog.showModal();
    $("index-name").focus();
  }

  function createIndex(name) {
    const select = $("index-select");
    if (![...select.options].some((o) => o.value === name)) {
      const option = el("option", null, name);
      option.value = name;
      select.insertBefore(option, select.lastElementChild);
    }
    select.value = name;
    switchIndex(name).then(() => showSide("documents"));
  }

  async function switchIndex(name) {
    state.index = name;
    localStorage.setItem(INDEX_NAME, name);
    const saved = localStorage.getItem(SESSION_PREFIX + name);
    newChat({ forget: false });
    await refreshSessions();
    if (saved) await openSession(saved, { quiet: true });
    if (!$("side").classList.contains("hidden") && !$("documents-view").classList.contains("hidden")) {
      await refreshDocuments();
    }
  }

  // --- sessions --------------------------------------------------------------------------

  async function refreshSessions() {
    let sessions = [];
    try {
      const body = await apiJson(`/sessions?${indexQuery()}`);
      sessions = body.sessions || [];
    } catch (error) {
      toast(`Could not list sessions: ${error.message}`);
    }
    const list = $("session-list");
    list.replaceChildren();
    for (const session of sessions) {
      const turns = plural(session.turns, "question");
      const info = session.updated ? `${turns} · ${formatTime(session.updated)}` : turns;
      const open = el("button", "session-open", el("span", "session-name", session.name), el("span", "session-info", info));
      open.type = "button";
      open.title = `${session.name}: ${info}`;
      open.addEventListener("click", () => {
        openSession(session.name);
        $("sessions").classList.remove("open");
        $("toggle-sessions").setAttribute("aria-expanded", "false");
      });
      const remove = el("button", "session-delete", "✕");
      remove.type = "button";
      remove.title = `Delete session ${session.name}`;
      remove.setAttribute("aria-label", `Delete session ${session.name}`);
      remove.addEventListener("click", () => deleteSession(session.name));
      const item = el("li", session.name === state.session ? "current" : null, open, remove);
      item.dataset.session = session.name;
      list.append(item);
    }
    $("sessions-empty").classList.toggle("hidden", sessions.length > 0);
  }

  function markCurrentSession() {
    for (const item of $("session-list").children) {
      item.classList.toggle("current", item.dataset.session === state.session);
    }
  }

  function formatTime(value) {
    const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    if (Number.isNaN(date.getTime())) return String(value);
    const today = date.toDateString() === new Date().toDateString();
    return today ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : date.toLocaleDateString();
  }

  async function openSession(name, { quiet = false } = {}) {
    stopAnswer();
    let session;
    try {
      session = await apiJson(`/sessions/${encodeURIComponent(name)}`);
    } catch (error) {
      if (error.status === 404) localStorage.removeItem(SESSION_PREFIX + state.index);
      if (!quiet) toast(`Could not open session ${name}: ${error.message}`);
      return;
    }
    state.session = session.name;
    localStorage.setItem(SESSION_PREFIX + state.index, session.name);
    clearMessages();
    for (const turn of session.turns || []) {
      const view = addTurn(turn.question);
      finishAnswer(view, turn.answer || {}, null);
    }
    markCurrentSession();
    scrollToEnd();
  }

  async function deleteSession(name) {
    try {
      await api(`/sessions/${encodeURIComponent(name)}`, { method: "DELETE" });
    } catch (error) {
      toast(`Could not delete session ${name}: ${error.message}`);
      return;
    }
    if (state.session === name) newChat();
    await refreshSessions();
  }

  function newChat({ forget = true } = {}) {
    stopAnswer();
    state.session = null;
    if (forget && state.index) localStorage.removeItem(SESSION_PREFIX + state.index);
    clearMessages();
    markCurrentSession();
    $("question").focus();
  }

  // --- chat ------------------------------------------------------------------------------

  function clearMessages() {
    $("messages").replaceChildren($("welcome"));
    $("welcome").classList.remove("hidden");
  }

  function scrollToEnd() {
    const box = $("messages");
    box.scrollTop = box.scrollHeight;
  }

  /** A question bubble and an empty answer that fills as tokens arrive. */
  function addTurn(question) {
    $("welcome").classList.add("hidden");
    const text = el("div", "answer-text");
    const stream = document.createTextNode("");
    text.append(stream);
    const meta = el("div", "answer-meta");
    const answer = el("div", "answer", text, meta);
    const turn = el("article", "turn", el("div", "question", question), answer);
    $("messages").append(turn);
    return { turn, answer, text, stream, meta, citations: [] };
  }

  function setBusy(busy) {
    $("send").disabled = busy;
    $("stop").classList.toggle("hidden", !busy);
  }

  /** A session name people can read and type (`rag chat --session NAME`): the question's first words. */
  function sessionName(question) {
    const words = question.toLowerCase().normalize("NFKD").replace(/[^a-z0-9]+/g, " ").trim().split(" ");
    let slug = "";
    for (const word of words) {
      if (!word || (slug + word).length > 40) break;
      slug = slug ? `${slug}-${word}` : word;
    }
    const suffix = Math.floor(Math.random() * 0x10000).toString(16).padStart(4, "0");
    return slug ? `${slug}-${suffix}` : null;
  }

  async function ensureSession(question) {
    if (state.session) return state.session;
    let response;
    try {
      response = await postJson("/sessions", { index: state.index, name: sessionName(question) });
    } catch (error) {
      if (error.status !== 409 && error.status !== 422) throw error;
      response = await postJson("/sessions", { index: state.index }); // let the server pick a name
    }
    const body = await response.json();
    state.session = body.name;
    localStorage.setItem(SESSION_PREFIX + state.index, body.name);
    return body.name;
  }

  async function ask(question) {
    const view = addTurn(question);
    view.answer.classList.add("streaming");
    view.answer.setAttribute("aria-busy", "true"); // screen readers read the answer once, when done
    scrollToEnd();
    const controller = new AbortController();
    state.controller = controller;
    setBusy(true);
    let finished = false;
    try {
      const name = await ensureSession(question);
      const response = await postJson(
        `/sessions/${encodeURIComponent(name)}/messages`,
        { question },
        { headers: { Accept: "text/event-stream" }, signal: controller.signal },
      );
      for await (const { event, data } of readEvents(response)) {
        if (event === "token") {
          view.stream.appendData(data.text || "");
          scrollToEnd();
        } else if (event === "citations") {
          view.citations = data.citations || [];
        } else if (event === "done") {
          finishAnswer(view, data.answer || { answer: view.stream.data, refused: data.refused }, view.citations);
          finished = true;
        } else if (event === "error") {
          failAnswer(view, data.message || "The answer failed.");
          finished = true;
        }
      }
      if (!finished) failAnswer(view, "The connection closed before the answer was complete.");
    } catch (error) {
      if (error.name === "AbortError") stoppedAnswer(view);
      else failAnswer(view, error.message);
    } finally {
      if (state.controller === controller) state.controller = null;
      view.answer.classList.remove("streaming");
      view.answer.removeAttribute("aria-busy");
      setBusy(false);
      refreshSessions();
    }
  }

  function stopAnswer() {
    if (state.controller) state.controller.abort();
  }

  function badge(kind, text, title) {
    const node = el("span", `badge ${kind}`, text);
    if (title) node.title = title;
    return node;
  }

  function stoppedAnswer(view) {
    view.answer.classList.add("stopped");
    view.meta.append(badge("stopped", "Stopped"));
  }

  function failAnswer(view, message) {
    view.answer.classList.add("failed");
    if (!view.stream.data) view.stream.data = message;
    view.meta.append(badge("error", "Error", message));
  }

  /** Citations by n: the stream's `citations` event carries offsets that the answer may lack. */
  function mergeCitations(fromAnswer, fromEvent) {
    const byN = new Map();
    for (const c of fromAnswer || []) byN.set(Number(c.n), { ...c });
    for (const c of fromEvent || []) byN.set(Number(c.n), { ...(byN.get(Number(c.n)) || {}), ...c });
    return [...byN.values()].sort((a, b) => a.n - b.n);
  }

  /** Replace the streamed text with the final answer: [n] become buttons, and a label says how it was made. */
  function finishAnswer(view, answer, eventCitations) {
    const refused = Boolean(answer.refused);
    const citations = refused ? [] : mergeCitations(answer.citations, eventCitations);
    view.citations = citations;
    const byN = new Map(citations.map((c) => [Number(c.n), c]));
    const text = typeof answer.answer === "string" ? answer.answer : answer.text || view.stream.data;
    view.text.replaceChildren();
    const pattern = /\[(\d+)\]/g;
    let at = 0;
    for (const match of text.matchAll(pattern)) {
      const citation = byN.get(Number(match[1]));
      if (!citation) continue;
      view.text.append(document.createTextNode(text.slice(at, match.index)), citeButton(citation));
      at = match.index + match[0].length;
    }
    view.text.append(document.createTextNode(text.slice(at)));

    // "answerer" is "llm" or "extractive" (older servers and saved turns said "mode").
    const kind = answer.answerer || answer.mode || "";
    view.answer.classList.toggle("refused", refused);
    view.answer.dataset.answerer = kind;
    view.meta.replaceChildren();
    if (refused) view.meta.append(badge("refusal", "Declined", "The documents don't hold the answer"));
    if (kind === "extractive") {
      view.meta.append(badge("extractive", "Extractive", "Quoted from the documents: no LLM configured"));
    } else if (kind) {
      view.meta.append(badge("llm", `LLM · ${answer.model || "model"}`, "Written by a language model from the sources"));
    }
    const usage = answer.usage || {};
    if (usage.total_tokens) {
      const cost = typeof usage.cost_usd === "number" && usage.cost_usd > 0 ? ` · $${usage.cost_usd.toFixed(4)}` : "";
      const spent = el("span", "usage", `${usage.total_tokens.toLocaleString()} tokens${cost}`);
      spent.title = `${usage.prompt_tokens} in, ${usage.completion_tokens} out${usage.estimated ? " (estimated)" : ""}`;
      view.meta.append(spent);
    }
    if (citations.length) {
      const list = el("ol", "sources");
      for (const c of citations) {
        const where = c.page !== null && c.page !== undefined ? `${basename(c.source)}, page ${c.page}` : basename(c.source);
        list.append(el("li", null, citeButton(c), ` ${where}`));
      }
      view.answer.append(list);
    }
  }

  function citeButton(citation) {
    const button = el("button", "cite", `[${citation.n}]`);
    button.type = "button";
    button.dataset.n = String(citation.n);
    const where = citation.page !== null && citation.page !== undefined ? ` page ${citation.page}` : "";
    button.title = `${basename(citation.source)}${where}`;
    button.setAttribute("aria-label", `Source ${citation.n}: ${basename(citation.source)}${where}`);
    button.addEventListener("click", () => {
      for (const active of document.querySelectorAll(".cite.active")) active.classList.remove("active");
      button.classList.add("active");
      openSource(citation);
    });
    return button;
  }

  // --- the side pane: source and documents --------------------------------------------

  function showSide(tab) {
    $("side").classList.remove("hidden");
    const source = tab === "source";
    $("source-view").classList.toggle("hidden", !source);
    $("documents-view").classList.toggle("hidden", source);
    $("tab-source").setAttribute("aria-selected", String(source));
    $("tab-documents").setAttribute("aria-selected", String(!source));
    if (!source) refreshDocuments();
  }

  function closeSide() {
    $("side").classList.add("hidden");
  }

  async function documentIdFor(citation) {
    if (citation.document_id) return citation.document_id;
    // Older answers may lack the id: find the document by its source path.
    const body = await apiJson(`/documents?${indexQuery()}`);
    const found = (body.documents || []).find((d) => d.source === citation.source);
    return found ? found.id : null;
  }

  /** Where the cited passage lies in the page text: by offsets when they agree, else by search. */
  function locate(text, citation, offset) {
    const wanted = citation.text || "";
    const { start, end } = citation;
    if (Number.isInteger(start) && Number.isInteger(end) && end > start) {
      for (const shift of [0, offset || 0]) {
        const s = start - shift;
        const e = end - shift;
        if (s >= 0 && e <= text.length && (!wanted || text.slice(s, e) === wanted)) return [s, e];
      }
    }
    if (wanted) {
      const exact = text.indexOf(wanted);
      if (exact >= 0) return [exact, exact + wanted.length];
      // The same words with different whitespace (PDF line breaks).
      const words = wanted.trim().split(/\s+/).map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
      if (words.length) {
        const match = new RegExp(words.join("\\s+")).exec(text);
        if (match) return [match.index, match.index + match[0].length];
      }
    }
    return null;
  }

  async function openSource(citation) {
    showSide("source");
    $("source-empty").classList.add("hidden");
    $("source").classList.remove("hidden");
    $("source-name").textContent = basename(citation.source);
    $("source-name").title = citation.source || "";
    const hasPage = citation.page !== null && citation.page !== undefined;
    $("source-page").textContent = hasPage ? `page ${citation.page}` : "";
    const note = $("source-note");
    note.classList.add("hidden");
    const box = $("source-text");
    box.replaceChildren(document.createTextNode("Loading…"));
    const link = $("source-open");
    link.removeAttribute("href");

    let id;
    let body;
    try {
      id = await documentIdFor(citation);
      if (!id) throw new ApiError("This document is no longer in the index.", 404);
      const page = hasPage ? `&page=${encodeURIComponent(citation.page)}` : "";
      body = await apiJson(`/documents/${encodeURIComponent(id)}/text?${indexQuery(page)}`);
    } catch (error) {
      // Still show what the answer quoted, so the passage is never lost.
      box.replaceChildren(el("mark", null, citation.text || ""));
      note.textContent = `Could not load the document text: ${error.message}`;
      note.classList.remove("hidden");
      return;
    }
    const fileUrl = `${API}/documents/${encodeURIComponent(id)}/file?${indexQuery()}${hasPage ? `#page=${citation.page}` : ""}`;
    link.href = fileUrl;
    link.dataset.page = hasPage ? String(citation.page) : "";
    link.textContent = hasPage ? `Open the original at page ${citation.page}` : "Open the original";

    const text = typeof body.text === "string" ? body.text : "";
    const span = locate(text, citation, body.offset);
    if (span) {
      const mark = el("mark", null, text.slice(span[0], span[1]));
      box.replaceChildren(document.createTextNode(text.slice(0, span[0])), mark, document.createTextNode(text.slice(span[1])));
      mark.scrollIntoView({ block: "center" });
    } else {
      box.replaceChildren(document.createTextNode(text));
      if (citation.text) {
        note.textContent = "The cited passage could not be found on this page; showing the whole page.";
        note.classList.remove("hidden");
      }
    }
  }

  /** With a key, a plain link cannot authenticate: fetch the file and open it as a blob. */
  async function openOriginal(event) {
    const link = event.currentTarget;
    if (!storedKey() || !link.href) return;
    event.preventDefault();
    const [url, fragment] = link.href.split("#");
    const opened = window.open("", "_blank");
    try {
      const response = await api(url.slice(url.indexOf(API) + API.length));
      const data = await response.blob();
      // A blob URL runs in this page's origin: anything but a PDF is shown as plain text, never rendered.
      const type = data.type.startsWith("application/pdf") ? "application/pdf" : "text/plain;charset=utf-8";
      const blob = URL.createObjectURL(new Blob([data], { type }));
      const target = fragment ? `${blob}#${fragment}` : blob;
      if (opened) opened.location.href = target;
      else window.location.href = target;
    } catch (error) {
      if (opened) opened.close();
      toast(`Could not open the file: ${error.message}`);
    }
  }

  async function refreshDocuments() {
    let documents = [];
    // A new index has no documents until its first upload (and the server would say 404).
    if (state.indexes.has(state.index)) {
      try {
        const body = await apiJson(`/documents?${indexQuery()}`);
        documents = body.documents || [];
      } catch (error) {
        if (error.status !== 404) toast(`Could not list documents: ${error.message}`);
      }
    }
    const list = $("document-list");
    list.replaceChildren();
    for (const doc of documents) {
      const info = [doc.kind, doc.pages ? plural(doc.pages, "page") : null, plural(doc.chunks, "chunk"),
        doc.uploaded ? "uploaded" : "from disk"].filter(Boolean).join(" · ");
      const remove = el("button", "document-delete", "Delete");
      remove.type = "button";
      remove.setAttribute("aria-label", `Delete ${basename(doc.source)}`);
      remove.addEventListener("click", () => deleteDocument(doc, remove));
      const name = el("span", "document-name", basename(doc.source));
      name.title = doc.source;
      const item = el("li", null, el("div", "document-head", name, remove), el("div", "document-info", info));
      item.dataset.id = doc.id;
      list.append(item);
    }
    $("documents-count").textContent = documents.length ? `(${documents.length})` : "";
    $("documents-empty").classList.toggle("hidden", documents.length > 0);
  }

  /** Two clicks delete: the first asks "Really delete?" (no confirm(): it blocks and tests can't see it). */
  async function deleteDocument(doc, button) {
    if (!button.classList.contains("confirming")) {
      button.classList.add("confirming", "danger");
      button.textContent = "Really delete?";
      return;
    }
    button.disabled = true;
    try {
      await api(`/documents/${encodeURIComponent(doc.id)}?${indexQuery()}`, { method: "DELETE" });
      toast(`Deleted ${basename(doc.source)}`);
    } catch (error) {
      toast(`Could not delete ${basename(doc.source)}: ${error.message}`);
    }
    await refreshDocuments();
    loadIndexes().catch(() => {});
  }

  // --- uploads -------------------------------------------------------------------------

  function clearFinishedUploads() {
    for (const item of [...$("uploads").children]) {
      if (item.classList.contains("done") || item.classList.contains("failed")) item.remove();
    }
    $("clear-uploads").classList.toggle("hidden", $("uploads").children.length === 0);
  }

  function uploadRow(file) {
    const stage = el("span", "upload-stage", "uploading");
    const progress = el("progress");
    progress.max = 100;
    progress.value = 0;
    const reason = el("p", "upload-reason hidden");
    const item = el("li", "upload", el("div", "upload-head", el("span", "upload-name", file.name), stage), progress, reason);
    item.dataset.file = file.name;
    $("uploads").prepend(item);
    $("clear-uploads").classList.remove("hidden");
    return { item, stage, progress, reason, name: file.name, finished: false, loaded: false };
  }

  function setStage(row, stage, value) {
    row.stage.textContent = stage;
    row.item.dataset.stage = stage.split(" ")[0];
    if (value !== undefined) row.progress.value = value;
  }

  function failRow(row, reason) {
    row.finished = true;
    row.item.classList.add("failed");
    setStage(row, "failed");
    row.reason.textContent = reason;
    row.reason.classList.remove("hidden");
    row.progress.classList.add("hidden");
  }

  function finishRow(row, stage) {
    row.finished = true;
    row.item.classList.add("done");
    setStage(row, stage, 100);
  }

  /** multipart POST with XMLHttpRequest: fetch cannot report upload progress. */
  function postFiles(files, rows) {
    return new Promise((resolve, reject) => {
      const form = new FormData();
      for (const file of files) form.append("files", file, file.name);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", `${API}/documents?${indexQuery()}`);
      const key = storedKey();
      if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
      xhr.upload.addEventListener("progress", (event) => {
        if (!event.lengthComputable) return;
        const percent = Math.round((100 * event.loaded) / event.total);
        for (const row of rows) setStage(row, `uploading ${percent}%`, percent * 0.3);
      });
      xhr.addEventListener("load", () => {
        let body = null;
        try {
          body = JSON.parse(xhr.responseText);
        } catch (_) {
          // not JSON
        }
        if (xhr.status >= 200 && xhr.status < 300) resolve(body || {});
        else reject(new ApiError((body && body.error) || `${xhr.status} ${xhr.statusText}`, xhr.status));
      });
      xhr.addEventListener("error", () => reject(new ApiError("The upload failed: network error.", 0)));
      xhr.send(form);
    });
  }

  function rowFor(rows, file) {
    if (!file) return null;
    const name = basename(file);
    return rows.find((r) => r.name === file) || rows.find((r) => r.name === name) || null;
  }

  async function uploadFiles(fileList) {
    const files = [...fileList];
    if (!files.length) return;
    showSide("documents");
    const rows = files.map(uploadRow);
    let job;
    for (let attempt = 0; ; attempt++) {
      try {
        job = await postFiles(files, rows);
        break;
      } catch (error) {
        if (error.status === 401 && attempt < 3) {
          await askForKey(storedKey() ? "That key was not accepted." : "");
          continue;
        }
        for (const row of rows) failRow(row, error.message);
        return;
      }
    }
    for (const row of rows) setStage(row, "queued", 30);
    // The server may have refused some files outright (wrong type, too big).
    for (const file of job.files || []) {
      const row = rowFor(rows, file.name);
      if (row && file.state === "failed") failRow(row, file.reason || "refused");
    }
    if (!job.job) {
      for (const row of rows) if (!row.finished) finishRow(row, "done");
      return;
    }
    try {
      const response = await api(`/jobs/${encodeURIComponent(job.job)}/events`, { headers: { Accept: "text/event-stream" } });
      for await (const { event, data } of readEvents(response)) {
        jobEvent(rows, event, data || {});
        if (event === "done") break;
      }
    } catch (error) {
      for (const row of rows) if (!row.finished) failRow(row, `Lost track of the upload: ${error.message}`);
    }
    for (const row of rows) if (!row.finished) finishRow(row, "done");
    await loadIndexes().catch(() => {}); // the upload may have created the index
    await refreshDocuments();
  }

  function jobEvent(rows, event, data) {
    if (event === "done") {
      // The job's last word on each file; rows that heard nothing more are done.
      for (const file of data.files || []) {
        const row = rowFor(rows, file.name || file.file);
        if (!row || row.finished) continue;
        if (file.state === "failed") failRow(row, file.reason || "failed");
        else if (file.state === "stored" || file.state === "unchanged") finishRow(row, file.state);
      }
      if (data.state === "failed" && data.report && data.report.error) {
        for (const row of rows) if (!row.finished) failRow(row, data.report.error);
      }
      return;
    }
    const named = rowFor(rows, data.file || data.path || data.source);
    let targets;
    if (named) targets = [named];
    else if (event === "embedded") {
      // Embedding progress is for the whole job: show it on the files being embedded.
      const loaded = rows.filter((r) => r.loaded && !r.finished);
      targets = loaded.length ? loaded : rows.filter((r) => !r.finished);
    } else targets = rows.filter((r) => !r.finished);
    for (const target of targets) {
      if (target.finished) continue;
      switch (event) {
        case "discovered":
          setStage(target, "discovered", 35);
          break;
        case "loaded":
          target.loaded = true;
          setStage(target, data.chunks ? `loaded (${data.chunks} chunks)` : "loaded", 45);
          break;
        case "embedded": {
          const total = Number(data.total) || 0;
          const n = Number(data.n) || 0;
          setStage(target, `embedded ${n}/${total}`, total ? 45 + (45 * n) / total : 60);
          break;
        }
        case "stored":
          finishRow(target, "stored");
          break;
        case "unchanged":
          finishRow(target, "unchanged");
          break;
        case "failed":
          failRow(target, data.reason || data.error || "failed");
          break;
        case "error":
          failRow(target, data.message || "the ingest failed");
          break;
        default:
          break;
      }
    }
  }

  function setUpDropzone() {
    const zone = $("dropzone");
    const input = $("file-input");
    const view = $("documents-view");
    const over = (on) => (event) => {
      event.preventDefault();
      zone.classList.toggle("over", on);
    };
    view.addEventListener("dragenter", over(true));
    view.addEventListener("dragover", over(true));
    view.addEventListener("dragleave", (event) => {
      if (!view.contains(event.relatedTarget)) zone.classList.remove("over");
    });
    view.addEventListener("drop", (event) => {
      event.preventDefault(); // also tells the window's handler below that this drop is taken
      zone.classList.remove("over");
      uploadFiles(event.dataTransfer.files);
    });
    // Files dropped anywhere else must not navigate away from the page.
    window.addEventListener("dragover", (event) => event.preventDefault());
    window.addEventListener("drop", (event) => {
      if (event.defaultPrevented) return;
      event.preventDefault();
      if (event.dataTransfer && event.dataTransfer.files.length) uploadFiles(event.dataTransfer.files);
    });
    zone.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        input.click();
      }
    });
    input.addEventListener("change", () => {
      uploadFiles(input.files);
      input.value = "";
    });
  }

  // --- wiring ----------------------------------------------------------------------------

  function setUp() {
    $("ask-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const question = $("question").value.trim();
      if (!question || state.controller) return;
      $("question").value = "";
      ask(question);
    });
    $("question").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        $("ask-form").requestSubmit();
      }
    });
    $("stop").addEventListener("click", stopAnswer);
    document.addEventListener("keydown", (event) => {
      if (event.key !== "Escape" || document.querySelector("dialog[open]")) return;
      if (state.controller) stopAnswer();
      else if ($("sessions").classList.contains("open")) $("toggle-sessions").click();
      else if (!$("side").classList.contains("hidden")) closeSide();
    });
    $("new-session").addEventListener("click", () => newChat());
    $("toggle-sessions").addEventListener("click", () => {
      const open = $("sessions").classList.toggle("open");
      $("toggle-sessions").setAttribute("aria-expanded", String(open));
    });
    $("index-select").addEventListener("change", (event) => {
      if (event.target.value === NEW_INDEX) newIndex();
      else switchIndex(event.target.value);
    });
    $("index-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const input = $("index-name");
      if (!input.reportValidity()) return;
      $("index-dialog").close();
      createIndex(input.value.trim());
    });
    $("index-cancel").addEventListener("click", () => $("index-dialog").close());
    $("open-documents").addEventListener("click", () => {
      const shown = !$("side").classList.contains("hidden") && !$("documents-view").classList.contains("hidden");
      if (shown) closeSide();
      else showSide("documents");
    });
    $("tab-source").addEventListener("click", () => showSide("source"));
    $("tab-documents").addEventListener("click", () => showSide("documents"));
    $("close-side").addEventListener("click", closeSide);
    $("source-open").addEventListener("click", openOriginal);
    $("key-button").addEventListener("click", () => askForKey(""));
    $("clear-uploads").addEventListener("click", clearFinishedUploads);
    if (storedKey()) $("key-button").classList.remove("hidden");
    setUpDropzone();
  }

  async function start() {
    setUp();
    try {
      await loadIndexes();
    } catch (error) {
      toast(`Could not reach the server: ${error.message}`);
      return;
    }
    await switchIndex(state.index);
    document.body.dataset.ready = "true";
  }

  start();
})();
