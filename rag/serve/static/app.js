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
    $("key-remember").checked = Boolean(localStorage.getItem(KEY_NAME)); // off unless asked before
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
      // Its first question says what it is about; the name is what `rag chat --session` takes.
      const title = session.title || session.name;
      const open = el("button", "session-open", el("span", "session-name", title), el("span", "session-info", info));
      open.type = "button";
      open.title = `${title}\n${info} · rag chat --session ${session.name}`;
      open.addEventListener("click", () => {
        openSession(session.name);
        closeDrawer();
      });
      const remove = el("button", "session-delete", "✕");
      remove.type = "button";
      remove.title = `Delete session ${session.name}`;
      remove.setAttribute("aria-label", `Delete session ${title}`);
      remove.addEventListener("click", () => deleteSession(session.name));
      const item = el("li", session.name === state.session ? "current" : null, open, remove);
      item.dataset.session = session.name;
      list.append(item);
    }
    $("sessions-empty").classList.toggle("hidden", sessions.length > 0);
  }

  /** The sessions drawer of a phone-wide page, over a backdrop that closes it when tapped. */
  function setDrawer(open) {
    $("sessions").classList.toggle("open", open);
    $("drawer-backdrop").classList.toggle("hidden", !open);
    $("toggle-sessions").setAttribute("aria-expanded", String(open));
  }

  function closeDrawer() {
    setDrawer(false);
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

  // Words that start questions but say nothing of their subject ("when did the ...").
  const QUESTION_WORDS = new Set(
    ("a an the what when where who whom whose which why how is are was were do does did can could would should " +
      "will shall may might must has have had be been of to in on at for by with about i we you me my our your " +
      "please tell explain describe give list show there it its this that these those and or").split(" "),
  );

  /** A session name people can read and type (`rag chat --session NAME`): the question's subject words. */
  function sessionName(question) {
    const words = question.toLowerCase().normalize("NFKD").replace(/[^a-z0-9]+/g, " ").trim().split(" ").filter(Boolean);
    const subject = words.filter((w) => !QUESTION_WORDS.has(w));
    let slug = "";
    for (const word of subject.length ? subject : words) {
      if ((slug + word).length > 40) break;
      slug = slug ? `${slug}-${word}` : word;
    }
    return slug || null;
  }

  /** The session of this chat, created with the question's name (name-2, name-3... when taken). */
  async function ensureSession(question) {
    if (state.session) return { name: state.session, created: false };
    const base = sessionName(question);
    let name = null;
    if (base) {
      // Names are shared by all indexes (and `rag chat`): pick a free one rather than collide.
      const body = await apiJson("/sessions");
      const taken = new Set((body.sessions || []).map((s) => s.name));
      for (let n = 1; !name; n++) if (!taken.has(n === 1 ? base : `${base}-${n}`)) name = n === 1 ? base : `${base}-${n}`;
    }
    let response;
    try {
      response = await postJson("/sessions", name ? { index: state.index, name } : { index: state.index });
    } catch (error) {
      if (error.status !== 409 && error.status !== 422) throw error;
      response = await postJson("/sessions", { index: state.index }); // taken meanwhile: the server picks a name
    }
    const body = await response.json();
    state.session = body.name;
    localStorage.setItem(SESSION_PREFIX + state.index, body.name);
    return { name: body.name, created: true };
  }

  /** A session this page created for a first question that got no answer is not kept empty. */
  async function dropEmptySession(name) {
    try {
      const session = await apiJson(`/sessions/${encodeURIComponent(name)}`);
      if ((session.turns || []).length) return;
      await api(`/sessions/${encodeURIComponent(name)}`, { method: "DELETE" });
    } catch (_) {
      return; // gone already, or the server is down: nothing to tidy
    }
    if (state.session === name) {
      state.session = null;
      localStorage.removeItem(SESSION_PREFIX + state.index);
    }
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
    let answered = false;
    let session = null;
    try {
      session = await ensureSession(question);
      const name = session.name;
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
          if (Array.isArray(data.support)) view.support = data.support;
        } else if (event === "done") {
          const answer = data.answer || { answer: view.stream.data, refused: data.refused };
          if (!answer.support && Array.isArray(data.support)) answer.support = data.support;
          finishAnswer(view, answer, view.citations);
          finished = true;
          answered = true;
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
      view.answer.classList.remove("streaming");
      view.answer.removeAttribute("aria-busy");
      // Tidied before the next question may be sent, so that it cannot race the delete.
      if (session && session.created && !answered) await dropEmptySession(session.name);
      if (state.controller === controller) state.controller = null;
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

  /** Ranges of the answer with [start, end) inside the text, or none. */
  function ranges(list, length) {
    if (!Array.isArray(list)) return [];
    return list.filter((r) => r && Number.isInteger(r.start) && Number.isInteger(r.end) && r.start >= 0 && r.end > r.start && r.end <= length);
  }

  // How a refusal that is the model's failure (``Answer.refusal``) is badged: apart from
  // "Declined", documents without the answer.
  const REFUSALS = {
    unsupported: ["Not backed", "The model answered, but rag found no sentence of its answer in the sources"],
    not_answering: ["Off the question", "The model answered from the sources, but not what was asked"],
    copied: ["Copied", "The model copied passages of other sources than those that best match the question"],
  };

  /**
   * Replace the streamed text with the final answer: [n] become buttons, the words that answer
   * are bold (as the CLI prints them), and a sentence the support check found no support for
   * in its sources is set apart; citations rag attributed (the model gave none) are marked.
   */
  function finishAnswer(view, answer, eventCitations) {
    const refused = Boolean(answer.refused);
    const citations = refused ? [] : mergeCitations(answer.citations, eventCitations);
    view.citations = citations;
    const byN = new Map(citations.map((c) => [Number(c.n), c]));
    const text = typeof answer.answer === "string" ? answer.answer : answer.text || view.stream.data;
    const spans = refused ? [] : ranges(answer.spans, text.length);
    const support = refused ? [] : ranges(answer.support || view.support, text.length);
    const context = { text, spans, support };
    const inAttributed = (at) => support.some((s) => s.attributed && s.start <= at && at <= s.end);

    const markers = [...text.matchAll(/\[(\d+)\]/g)]
      .filter((m) => byN.has(Number(m[1])))
      .map((m) => ({ start: m.index, end: m.index + m[0].length, n: Number(m[1]) }));
    const wrappers = [
      ...support.filter((s) => s.supported === false).map((s) => ({ ...s, kind: "unsupported" })),
      ...spans.map((s) => ({ ...s, kind: "answer-span" })),
    ];
    const cuts = new Set([0, text.length]);
    for (const r of [...markers, ...wrappers, ...support]) cuts.add(r.start).add(r.end);
    const points = [...cuts].sort((a, b) => a - b);
    view.text.replaceChildren();
    for (let p = 0; p + 1 < points.length; p++) {
      const [a, b] = [points[p], points[p + 1]];
      const marker = markers.find((m) => m.start <= a && m.end > a);
      if (marker) {
        if (marker.start === a) {
          view.text.append(citeButton(byN.get(marker.n), context, inAttributed(a)));
        }
        continue;
      }
      let node = document.createTextNode(text.slice(a, b));
      for (const w of wrappers.filter((r) => r.start <= a && r.end >= b).sort((x, y) => (x.kind < y.kind ? -1 : 1))) {
        const wrap = el(w.kind === "unsupported" ? "span" : "strong", w.kind, node);
        if (w.kind === "unsupported") wrap.title = "not supported by the cited sources";
        node = wrap;
      }
      view.text.append(node);
      // An attributed sentence whose citation is not written in the text gets its button here.
      for (const s of support) {
        if (s.attributed && s.end === b) {
          for (const n of s.citations || []) {
            const c = byN.get(Number(n));
            if (c && !markers.some((m) => m.n === c.n && m.start >= s.start && m.start <= s.end)) {
              view.text.append(" ", citeButton(c, context, true));
            }
          }
        }
      }
    }

    // "answerer" is "llm" or "extractive" (older servers and saved turns said "mode").
    const kind = answer.answerer || answer.mode || "";
    view.answer.classList.toggle("refused", refused);
    view.answer.dataset.answerer = kind;
    view.meta.replaceChildren();
    if (refused) {
      // The model's failure ("refusal" says why) is told apart from documents without the answer.
      const [label, title] = REFUSALS[answer.refusal] || ["Declined", "The documents don't hold the answer"];
      view.meta.append(badge("refusal", label, title));
    }
    if (REFUSALS[answer.set_aside]) {
      // Quotes in place of a model's answer that did not stand.
      const title = `${REFUSALS[answer.set_aside][1]}; these are quotes of the sources instead`;
      view.meta.append(badge("extractive", "Quotes instead", title));
    } else if (kind === "extractive") {
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
        // Attributed in the list when no sentence cited it itself.
        const cited = markers.some((m) => m.n === Number(c.n) && !inAttributed(m.start));
        const added =
          c.attributed === true || support.some((s) => s.attributed && (s.citations || []).map(Number).includes(Number(c.n)));
        list.append(el("li", null, citeButton(c, context, added && !cited), ` ${where}`));
      }
      view.answer.append(list);
    }
  }

  /** A [n] button that opens the cited passage; `answer` is what it was cited from (text, spans, support). */
  function citeButton(citation, answer, attributed = false) {
    const button = el("button", attributed ? "cite attributed" : "cite", `[${citation.n}]`);
    button.type = "button";
    button.dataset.n = String(citation.n);
    const where = citation.page !== null && citation.page !== undefined ? ` page ${citation.page}` : "";
    const note = attributed ? " (attributed by rag: the model cited nothing here)" : "";
    button.title = `${basename(citation.source)}${where}${note}`;
    button.setAttribute("aria-label", `Source ${citation.n}: ${basename(citation.source)}${where}${note}`);
    button.addEventListener("click", () => {
      for (const active of document.querySelectorAll(".cite.active")) active.classList.remove("active");
      button.classList.add("active");
      openSource(citation, answer);
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
    if (!source) {
      refreshDocuments();
      refreshStatus();
    }
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

  // Markdown files are drawn as Markdown (the loader's table of types names these two).
  const MARKDOWN = /\.(md|markdown)$/i;

  /** The cited page in the source pane, the passage marked: the sentence that answers, its bold words. */
  async function openSource(citation, answer) {
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
    box.classList.remove("rendered");
    box.replaceChildren(document.createTextNode("Loading…"));
    const link = $("source-open");
    setOriginal(link, null);

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
    setOriginal(link, fileUrl);
    link.textContent = hasPage ? `Open the original at page ${citation.page}` : "Open the original";

    const text = typeof body.text === "string" ? body.text : "";
    const markdown = MARKDOWN.test(citation.source || "");
    const rendered = markdown ? window.ragMarkdown.markdown(text) : window.ragMarkdown.plain(text);
    const passage = locate(text, citation, body.offset);
    window.ragMarkdown.highlight(rendered, window.ragPassage.marks(text, passage, answer, Number(citation.n)));
    box.classList.toggle("rendered", markdown);
    box.replaceChildren(rendered.root);
    const target = box.querySelector("mark");
    if (target) target.scrollIntoView({ block: "center" });
    else if (citation.text) {
      note.textContent = "The cited passage could not be found on this page; showing the whole page.";
      note.classList.remove("hidden");
    }
  }

  /**
   * "Open the original": a plain link without a key.  With a key, a link (clicked, middle-clicked,
   * or opened from its menu) would arrive without the header and show a 401: it has no address
   * then, and the page fetches the file with the header and opens it as a blob.
   */
  function setOriginal(link, url) {
    link.dataset.url = url || "";
    link.classList.toggle("hidden", !url);
    if (url && !storedKey()) {
      link.href = url;
      link.removeAttribute("role");
      link.removeAttribute("tabindex");
    } else {
      link.removeAttribute("href");
      link.setAttribute("role", "button");
      link.tabIndex = 0;
    }
  }

  /** With a key, a plain link cannot authenticate: fetch the file and open it as a blob. */
  async function openOriginal(event) {
    const link = $("source-open");
    if (event.type === "keydown" && event.key !== "Enter" && event.key !== " ") return;
    if (event.type === "auxclick" && event.button !== 1) return;
    if (link.href && !storedKey()) return; // a plain link does it
    event.preventDefault();
    if (!link.dataset.url) return;
    const [url, fragment] = link.dataset.url.split("#");
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

  // --- watched folders (`rag serve --watch`) ----------------------------------------------

  // Seconds between looks at /status while folders are watched (a change shows within this).
  const WATCH_POLL = 10;
  let watchTimer = null;

  /** The server's watched folders, from /status; servers without `watch` show nothing. */
  async function refreshStatus() {
    clearTimeout(watchTimer);
    let body;
    try {
      body = await apiJson("/status");
    } catch (_) {
      return; // the status area is a courtesy: answers and uploads say their own errors
    }
    const watches = Array.isArray(body && body.watch) ? body.watch.filter((w) => w && typeof w === "object") : [];
    renderWatch(watches);
    if (watches.length) watchTimer = setTimeout(refreshStatus, WATCH_POLL * 1000);
  }

  function renderWatch(watches) {
    const list = $("watch-list");
    list.replaceChildren();
    for (const w of watches) {
      const stateName = String(w.state || "unknown");
      const info = [
        stateName,
        Number.isInteger(w.files) ? plural(w.files, "file") : null,
        Number.isInteger(w.queued) && w.queued > 0 ? `${w.queued} queued` : null,
        typeof w.last_change === "number" ? `last change ${formatTime(w.last_change)}` : null,
        w.index ? `index ${w.index}` : null,
      ].filter(Boolean);
      const path = el("div", "watch-path", String(w.path || ""));
      path.title = String(w.path || "");
      const item = el("li", w.last_error ? "watch failed" : "watch", path, el("div", "watch-info", info.join(" · ")));
      item.dataset.state = stateName;
      if (w.last_error) item.append(el("p", "watch-error", String(w.last_error)));
      list.append(item);
    }
    $("watch-area").classList.toggle("hidden", !watches.length);
    const chip = $("watch-status");
    const failed = watches.filter((w) => w.last_error).length;
    chip.classList.toggle("hidden", !watches.length);
    chip.classList.toggle("failed", failed > 0);
    const long = failed ? `Watch: ${plural(failed, "error")}` : `Watching ${plural(watches.length, "folder")}`;
    chip.replaceChildren(el("span", "long", long), el("span", "short", failed ? "Watch ⚠" : "Watch"));
    chip.title = `${long}: folders this server keeps in step with the index`;
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
    row.reason.classList.remove("hidden", "renamed");
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

  /** The row of a file the job names: by the name it is stored under, else the name it was sent as. */
  function rowFor(rows, file) {
    if (!file) return null;
    const name = basename(file);
    for (const key of [file, name]) {
      const found = rows.find((r) => r.stored === key) || rows.find((r) => !r.stored && r.name === key);
      if (found) return found;
    }
    return null;
  }

  /** The server's word on each file: the name it keeps it under (a taken name gets a suffix), or why not. */
  function acceptedFiles(rows, files) {
    files.forEach((file, i) => {
      // The list follows the order of the upload; by name only if it does not line up.
      const row = files.length === rows.length ? rows[i] : rowFor(rows, file.uploaded_as || file.name);
      if (!row) return;
      if (file.name && file.name !== row.name) {
        row.stored = file.name;
        row.item.dataset.stored = file.name;
        row.reason.textContent = `stored as ${file.name}`;
        row.reason.classList.add("renamed");
        row.reason.classList.remove("hidden");
      }
      if (file.state === "failed") failRow(row, file.reason || "refused");
    });
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
    // The server may have renamed some, or refused them outright (wrong type, too big).
    acceptedFiles(rows, Array.isArray(job.files) ? job.files : []);
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
      else if ($("sessions").classList.contains("open")) closeDrawer();
      else if (!$("side").classList.contains("hidden")) closeSide();
    });
    $("new-session").addEventListener("click", () => {
      newChat();
      closeDrawer();
    });
    $("toggle-sessions").addEventListener("click", () => setDrawer(!$("sessions").classList.contains("open")));
    $("drawer-backdrop").addEventListener("click", closeDrawer);
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
    $("watch-status").addEventListener("click", () => showSide("documents"));
    $("tab-source").addEventListener("click", () => showSide("source"));
    $("tab-documents").addEventListener("click", () => showSide("documents"));
    $("close-side").addEventListener("click", closeSide);
    for (const type of ["click", "auxclick", "keydown"]) $("source-open").addEventListener(type, openOriginal);
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
    await refreshStatus();
    document.body.dataset.ready = "true";
  }

  start();
})();
