// Text-safe rendering of a document's text for the source pane, with highlights by offset.
//
// Markdown is drawn as headings, lists, quotes, code, tables, emphasis and links, but every
// character of the document goes into the page through a text node (never as HTML), and
// every text node is an exact slice of the text: `pieces` records where each one starts, so
// the passage, the sentence that answers and the words that answer can be marked by the
// offsets the server gives, whatever the rendering dropped (the `#`, `**`, `|` marks).
// Links are live only for http and https; images are never loaded, their alt text is shown.
"use strict";

window.ragMarkdown = (() => {
  /** A rendering: the element, and each text node with the offset in the text where it starts. */
  class Rendered {
    constructor(root) {
      this.root = root;
      this.pieces = [];
    }

    /** A text node of source[start, end), appended to parent. */
    text(parent, source, start, end) {
      if (end <= start) return;
      const node = document.createTextNode(source.slice(start, end));
      this.pieces.push({ node, start });
      parent.append(node);
    }
  }

  function element(tag, className) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    return node;
  }

  /** Plain text: one text node, as is. */
  function plain(source) {
    const rendered = new Rendered(element("div", "plain"));
    rendered.text(rendered.root, source, 0, source.length);
    return rendered;
  }

  // --- lines: each is {s, text} with text === source.slice(s, s + text.length) -------------

  function splitLines(source) {
    const lines = [];
    let s = 0;
    for (;;) {
      const nl = source.indexOf("\n", s);
      if (nl < 0) {
        lines.push({ s, text: source.slice(s) });
        return lines;
      }
      lines.push({ s, text: source.slice(s, nl) });
      s = nl + 1;
    }
  }

  /** The line without its first n characters (a quote mark, a list indent). */
  function drop(line, n) {
    const k = Math.min(n, line.text.length);
    return { s: line.s + k, text: line.text.slice(k) };
  }

  /** Leading spaces of a line, a tab counted as 4 (enough for lists and code). */
  function indentOf(text) {
    let width = 0;
    for (const c of text) {
      if (c === " ") width += 1;
      else if (c === "\t") width += 4;
      else break;
    }
    return width;
  }

  /** Drop up to `width` columns of indentation. */
  function dedent(line, width) {
    let k = 0;
    let w = 0;
    while (k < line.text.length && w < width && (line.text[k] === " " || line.text[k] === "\t")) {
      w += line.text[k] === "\t" ? 4 : 1;
      k += 1;
    }
    return drop(line, k);
  }

  const BLANK = /^[ \t\r]*$/;
  const HEADING = /^ {0,3}(#{1,6})(?=[ \t\r]|$)[ \t]*/;
  const FENCE = /^ {0,3}(`{3,}|~{3,})/;
  const RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t\r]*$/;
  const QUOTE = /^ {0,3}> ?/;
  const ITEM = /^( {0,3})([-*+]|\d{1,9}[.)])([ \t]+|[ \t]*\r?$)/;
  const SETEXT = /^ {0,3}(=+|-+)[ \t\r]*$/;
  const TABLE_RULE = /^ {0,3}\|?[ \t]*:?-+:?[ \t]*(\|[ \t]*:?-+:?[ \t]*)*\|?[ \t\r]*$/;

  function startsBlock(lines, i) {
    const text = lines[i].text;
    return (
      HEADING.test(text) || FENCE.test(text) || RULE.test(text) || QUOTE.test(text) || ITEM.test(text) || isTable(lines, i)
    );
  }

  function isTable(lines, i) {
    return i + 1 < lines.length && lines[i].text.includes("|") && TABLE_RULE.test(lines[i + 1].text) && lines[i + 1].text.includes("-");
  }

  // --- blocks -------------------------------------------------------------------------------

  function blocks(out, source, lines, parent) {
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      const text = line.text;
      if (BLANK.test(text)) {
        i += 1;
        continue;
      }
      let match;
      if ((match = FENCE.exec(text))) {
        i = fence(out, source, lines, i, match, parent);
      } else if ((match = HEADING.exec(text))) {
        const level = match[1].length;
        // A closing run of #s is decoration, not text.
        let body = drop(line, match[0].length);
        const closing = /[ \t]+#+[ \t\r]*$|^#+[ \t\r]*$/.exec(body.text);
        if (closing) body = { s: body.s, text: body.text.slice(0, closing.index) };
        const heading = element(`h${Math.min(level + 2, 6)}`, `md-h${level}`);
        inline(out, source, [body], heading);
        parent.append(heading);
        i += 1;
      } else if (RULE.test(text)) {
        parent.append(element("hr"));
        i += 1;
      } else if (QUOTE.test(text)) {
        const inner = [];
        while (i < lines.length && !BLANK.test(lines[i].text) && (QUOTE.test(lines[i].text) || inner.length)) {
          const quoted = QUOTE.exec(lines[i].text);
          if (!quoted && startsBlock(lines, i)) break;
          inner.push(quoted ? drop(lines[i], quoted[0].length) : lines[i]);
          i += 1;
        }
        const quote = element("blockquote");
        blocks(out, source, inner, quote);
        parent.append(quote);
      } else if (ITEM.test(text)) {
        i = list(out, source, lines, i, parent);
      } else if (isTable(lines, i)) {
        i = table(out, source, lines, i, parent);
      } else if (indentOf(text) >= 4) {
        const start = i;
        while (i < lines.length && (indentOf(lines[i].text) >= 4 || BLANK.test(lines[i].text))) i += 1;
        while (i > start && BLANK.test(lines[i - 1].text)) i -= 1;
        const pre = element("pre");
        const code = element("code");
        codeLines(out, source, lines.slice(start, i).map((l) => dedent(l, 4)), code);
        pre.append(code);
        parent.append(pre);
      } else {
        const para = [line];
        i += 1;
        let level = 0;
        while (i < lines.length && !BLANK.test(lines[i].text)) {
          const setext = SETEXT.exec(lines[i].text);
          if (setext) {
            level = setext[1][0] === "=" ? 1 : 2;
            i += 1;
            break;
          }
          if (startsBlock(lines, i)) break;
          para.push(lines[i]);
          i += 1;
        }
        const node = level ? element(`h${level + 2}`, `md-h${level}`) : element("p");
        inline(out, source, para, node);
        parent.append(node);
      }
    }
  }

  /** Lines of code as text nodes, the newlines between them included (they are in the text). */
  function codeLines(out, source, lines, parent) {
    lines.forEach((line, k) => {
      out.text(parent, source, line.s, line.s + line.text.length);
      if (k < lines.length - 1) parent.append(document.createTextNode("\n"));
    });
  }

  function fence(out, source, lines, i, match, parent) {
    const marker = match[1];
    const indent = match[0].length - marker.length;
    const closing = new RegExp(`^ {0,3}${marker[0] === "`" ? "`" : "~"}{${marker.length},}[ \\t\\r]*$`);
    let j = i + 1;
    while (j < lines.length && !closing.test(lines[j].text)) j += 1;
    const pre = element("pre");
    const code = element("code");
    codeLines(out, source, lines.slice(i + 1, j).map((l) => dedent(l, indent)), code);
    pre.append(code);
    parent.append(pre);
    return Math.min(j + 1, lines.length);
  }

  function list(out, source, lines, i, parent) {
    const first = ITEM.exec(lines[i].text);
    const ordered = /\d/.test(first[2]);
    const kind = ordered ? first[2].slice(-1) : first[2];
    const node = element(ordered ? "ol" : "ul");
    if (ordered) node.start = Number.parseInt(first[2], 10);
    while (i < lines.length) {
      const match = ITEM.exec(lines[i].text);
      if (!match || (ordered ? !/\d/.test(match[2]) || match[2].slice(-1) !== kind : match[2] !== kind)) break;
      const contentIndent = match[0].length;
      const content = [drop(lines[i], match[0].length)];
      i += 1;
      while (i < lines.length) {
        const text = lines[i].text;
        if (BLANK.test(text)) {
          // A blank line continues the item only when the next line is indented into it.
          let j = i + 1;
          while (j < lines.length && BLANK.test(lines[j].text)) j += 1;
          if (j < lines.length && indentOf(lines[j].text) >= contentIndent) {
            for (; i < j; i += 1) content.push(lines[i]);
            continue;
          }
          break;
        }
        if (indentOf(text) >= contentIndent) content.push(dedent(lines[i], contentIndent));
        else if (!startsBlock(lines, i) && !BLANK.test(content[content.length - 1].text)) content.push(lines[i]);
        else break;
        i += 1;
      }
      const item = element("li");
      blocks(out, source, content, item);
      // A tight item is one paragraph: show it without the paragraph's margins.
      if (item.children.length === 1 && item.firstElementChild.tagName === "P") item.firstElementChild.className = "tight";
      node.append(item);
      while (i < lines.length && BLANK.test(lines[i].text)) {
        if (i + 1 < lines.length && ITEM.test(lines[i + 1].text)) i += 1;
        else break;
      }
    }
    parent.append(node);
    return i;
  }

  /** Cells of a table row: {s, text} trimmed, split at pipes that are not escaped. */
  function cells(line) {
    const found = [];
    let text = line.text;
    let s = line.s;
    const lead = /^[ \t]*\|/.exec(text);
    if (lead) {
      s += lead[0].length;
      text = text.slice(lead[0].length);
    }
    let at = 0;
    for (let k = 0; k <= text.length; k += 1) {
      if (k < text.length && text[k] === "\\") {
        k += 1;
        continue;
      }
      if (k === text.length || text[k] === "|") {
        const raw = text.slice(at, k);
        const left = raw.length - raw.trimStart().length;
        const cell = raw.trim();
        if (k < text.length || cell) found.push({ s: s + at + left, text: cell });
        at = k + 1;
      }
    }
    return found;
  }

  function table(out, source, lines, i, parent) {
    const aligns = cells(lines[i + 1]).map((c) => {
      const left = c.text.startsWith(":");
      const right = c.text.endsWith(":");
      return left && right ? "center" : right ? "right" : left ? "left" : "";
    });
    const node = element("table");
    const head = element("thead");
    const body = element("tbody");
    const row = (line, cellTag, into) => {
      const tr = element("tr");
      cells(line).forEach((cell, k) => {
        const td = element(cellTag, aligns[k] ? `align-${aligns[k]}` : null);
        inline(out, source, [cell], td);
        tr.append(td);
      });
      into.append(tr);
    };
    row(lines[i], "th", head);
    let j = i + 2;
    while (j < lines.length && !BLANK.test(lines[j].text) && lines[j].text.includes("|")) {
      row(lines[j], "td", body);
      j += 1;
    }
    node.append(head, body);
    const wrap = element("div", "table-wrap"); // wide tables scroll, the page does not
    wrap.append(node);
    parent.append(wrap);
    return j;
  }

  // --- inline -------------------------------------------------------------------------------

  /**
   * Inline Markdown over lines that may not be contiguous in the text (a quote's lines lose
   * their `>`): they are joined into one string `vs`, and `at[k]` is where vs[k] is in the text.
   */
  function inline(out, source, lines, parent) {
    let vs = "";
    const at = [];
    lines.forEach((line, k) => {
      let text = line.text;
      if (k === lines.length - 1) text = text.replace(/[ \t\r]+$/, "");
      for (let c = 0; c < text.length; c += 1) at.push(line.s + c);
      vs += text;
      if (k < lines.length - 1) {
        at.push(line.s + line.text.length); // the newline itself
        vs += "\n";
      }
    });
    const leading = vs.length - vs.trimStart().length;
    spans(out, source, vs, at, leading, vs.length, parent);
  }

  /** Text of vs[a, b) as text nodes, one per run that is contiguous in the source. */
  function emit(out, source, at, a, b, parent) {
    let start = a;
    for (let k = a + 1; k <= b; k += 1) {
      if (k === b || at[k] !== at[k - 1] + 1) {
        out.text(parent, source, at[start], at[k - 1] + 1);
        start = k;
      }
    }
  }

  const PUNCT = /[!-/:-@[-`{-~]/;

  /** How many times vs[k] repeats from k (before end). */
  function runLength(vs, k, end) {
    let n = 1;
    while (k + n < end && vs[k + n] === vs[k]) n += 1;
    return n;
  }

  function isSafeUrl(url) {
    try {
      const parsed = new URL(url);
      return parsed.protocol === "http:" || parsed.protocol === "https:";
    } catch (_) {
      return false;
    }
  }

  /** The closing `)` of a link destination, balancing parentheses; -1 if none. */
  function closingParen(vs, from, end) {
    let depth = 0;
    for (let k = from; k < end; k += 1) {
      if (vs[k] === "\\") k += 1;
      else if (vs[k] === "(") depth += 1;
      else if (vs[k] === ")") {
        if (depth === 0) return k;
        depth -= 1;
      }
    }
    return -1;
  }

  /** The `]` that closes a bracket opened just before `from`; -1 if none. */
  function closingBracket(vs, from, end) {
    const any = vs.indexOf("]", from);
    if (any < 0 || any >= end) return -1; // (a long paragraph of lone "["s stays linear)
    let depth = 0;
    for (let k = from; k < end; k += 1) {
      if (vs[k] === "\\") k += 1;
      else if (vs[k] === "`") {
        const run = "`".repeat(runLength(vs, k, end));
        const close = vs.indexOf(run, k + run.length);
        if (close >= 0 && close < end) k = close + run.length - 1;
      } else if (vs[k] === "[") depth += 1;
      else if (vs[k] === "]") {
        if (depth === 0) return k;
        depth -= 1;
      }
    }
    return -1;
  }

  /** Where the run of `n` x `c` that closes an emphasis opened before `from` starts; -1 if none. */
  function closingDelimiter(vs, c, n, from, end) {
    let k = from;
    while (k < end) {
      if (vs[k] === "\\") {
        k += 2;
        continue;
      }
      if (vs[k] !== c) {
        k += 1;
        continue;
      }
      let run = 1;
      while (k + run < end && vs[k + run] === c) run += 1;
      const close = k + run - n;
      const flanked = k > from && !/\s/.test(vs[k - 1]);
      const wordAfter = c === "_" && /[\p{L}\p{N}]/u.test(vs[k + run] || "");
      if (flanked && !wordAfter && (run === n || run >= 3) && close >= from && k + run <= end) return close;
      k += run;
    }
    return -1;
  }

  function spans(out, source, vs, at, a, b, parent) {
    let plainStart = a;
    const flush = (k) => {
      emit(out, source, at, plainStart, k, parent);
    };
    let k = a;
    while (k < b) {
      const c = vs[k];
      if (c === "\\" && k + 1 < b && PUNCT.test(vs[k + 1])) {
        flush(k);
        emit(out, source, at, k + 1, k + 2, parent); // the character, without its backslash
        k += 2;
        plainStart = k;
        continue;
      }
      if (c === "`") {
        const run = "`".repeat(runLength(vs, k, b));
        const close = vs.indexOf(run, k + run.length);
        if (close >= 0 && close + run.length <= b && vs[close + run.length] !== "`") {
          flush(k);
          const code = element("code");
          emit(out, source, at, k + run.length, close, code);
          parent.append(code);
          k = close + run.length;
          plainStart = k;
          continue;
        }
        k += run.length;
        continue;
      }
      if (c === "[" || (c === "!" && vs[k + 1] === "[")) {
        const image = c === "!";
        const open = k + (image ? 2 : 1);
        const shut = closingBracket(vs, open, b);
        if (shut >= 0 && vs[shut + 1] === "(") {
          const end = closingParen(vs, shut + 2, b);
          if (end >= 0) {
            const target = vs.slice(shut + 2, end).trim();
            const url = target.replace(/^<([^>]*)>.*$|^(\S*).*$/s, "$1$2");
            flush(k);
            let node;
            if (image) {
              node = element("span", "md-image");
              node.title = url ? `image: ${url}` : "image";
            } else if (isSafeUrl(url)) {
              node = element("a");
              node.href = url;
              node.target = "_blank";
              node.rel = "noopener noreferrer nofollow";
              node.title = url;
            } else {
              node = element("span", "md-link");
              node.title = url;
            }
            spans(out, source, vs, at, open, shut, node);
            parent.append(node);
            k = end + 1;
            plainStart = k;
            continue;
          }
        }
      }
      if (c === "<") {
        const auto = /^<([a-z][a-z0-9+.-]{1,31}:[^\s<>]{0,2000})>/i.exec(vs.slice(k, Math.min(b, k + 2048)));
        if (auto && isSafeUrl(auto[1])) {
          flush(k);
          const link = element("a");
          link.href = auto[1];
          link.target = "_blank";
          link.rel = "noopener noreferrer nofollow";
          emit(out, source, at, k + 1, k + auto[0].length - 1, link);
          parent.append(link);
          k += auto[0].length;
          plainStart = k;
          continue;
        }
      }
      if (c === "*" || c === "_" || c === "~") {
        const run = c.repeat(runLength(vs, k, b));
        const intraword = c === "_" && k > a && /[\p{L}\p{N}]/u.test(vs[k - 1]);
        const opens = !intraword && k + run.length < b && !/\s/.test(vs[k + run.length]);
        if (opens && (c !== "~" || run.length === 2)) {
          const n = c === "~" ? 2 : Math.min(run.length, 3);
          const close = closingDelimiter(vs, c, n, k + n, b);
          if (close >= 0) {
            flush(k);
            const tag = c === "~" ? "del" : n === 1 ? "em" : "strong";
            const outer = element(tag);
            let inner = outer;
            if (n === 3) {
              inner = element("em");
              outer.append(inner);
            }
            spans(out, source, vs, at, k + n, close, inner);
            parent.append(outer);
            k = close + n;
            plainStart = k;
            continue;
          }
        }
        k += run.length;
        continue;
      }
      k += 1;
    }
    flush(b);
  }

  /** Markdown, drawn from text nodes only. */
  function markdown(source) {
    const rendered = new Rendered(element("div", "markdown"));
    blocks(rendered, source, splitLines(source), rendered.root);
    return rendered;
  }

  // --- highlights ---------------------------------------------------------------------------

  /**
   * Wrap the text in `ranges` ({start, end, tag, className, title}, outermost first) without
   * changing it: each text node is cut where a range begins or ends.
   */
  function highlight(rendered, ranges) {
    const wanted = ranges.filter((r) => Number.isInteger(r.start) && Number.isInteger(r.end) && r.end > r.start);
    if (!wanted.length) return;
    const wrappers = new WeakMap();
    for (const piece of rendered.pieces) {
      const { node, start } = piece;
      const end = start + node.data.length;
      const touching = wanted.filter((r) => r.start < end && r.end > start);
      if (!touching.length) continue;
      const cuts = new Set([start, end]);
      for (const r of touching) {
        if (r.start > start) cuts.add(r.start);
        if (r.end < end) cuts.add(r.end);
      }
      const points = [...cuts].sort((x, y) => x - y);
      const fragment = document.createDocumentFragment();
      for (let p = 0; p + 1 < points.length; p += 1) {
        const [a, b] = [points[p], points[p + 1]];
        // Nest this part's ranges outermost first, reusing the wrappers of the part before it
        // while they are the same ranges: one <mark> holds a sentence and its <strong> words.
        let into = fragment;
        for (const r of touching.filter((t) => t.start <= a && t.end >= b)) {
          const last = into.lastChild;
          if (last && wrappers.get(last) === r) {
            into = last;
            continue;
          }
          const wrap = element(r.tag || "mark", r.className);
          if (r.title) wrap.title = r.title;
          wrappers.set(wrap, r);
          into.append(wrap);
          into = wrap;
        }
        into.append(document.createTextNode(node.data.slice(a - start, b - start)));
      }
      node.replaceWith(fragment);
    }
  }

  return { markdown, plain, highlight, isSafeUrl };
})();
