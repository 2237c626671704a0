// Which words of a source to mark when citation [n] is opened: the passage (the cited chunk),
// within it the sentence that answers, and within that the words the answer puts in bold.
//
// All offsets are into the page text the server sends (`/documents/{id}/text`).  The answer
// says which of its parts cite [n] (its `support` list when the server sends one, else the
// text before each [n] marker).  An extractive answer quotes the source, so its sentences are
// found as they are (whitespace aside); a written answer is matched to the passage's sentence
// sharing the most of its words, and only when that share is high enough to mean it.
"use strict";

window.ragPassage = (() => {
  // A paraphrase is matched to the sentence sharing at least this share of its words (and two
  // of them): "Quokkas live on Rottnest Island, near Perth" shares 4 of 5 with its source.
  const MIN_SHARE = 0.5;
  const STOP = new Set(
    ("the and for are was were with that this from has have had its into not but also than then they them their " +
      "which what when where who whom whose why how does did can could would should will shall been being about " +
      "there these those such only more most some any each other very just over under").split(" "),
  );

  function escape(text) {
    return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  }

  /** `needle` in text[from, to): exactly, else the same words with other whitespace; [start, end] or null. */
  function find(text, needle, from, to) {
    const wanted = needle.trim();
    if (!wanted) return null;
    const exact = text.indexOf(wanted, from);
    if (exact >= 0 && exact + wanted.length <= to) return [exact, exact + wanted.length];
    const pattern = new RegExp(wanted.split(/\s+/).map(escape).join("\\s+"), "g");
    pattern.lastIndex = from;
    const match = pattern.exec(text);
    return match && match.index + match[0].length <= to ? [match.index, match.index + match[0].length] : null;
  }

  /** Sentences of text[from, to) as [start, end], whitespace trimmed. */
  function sentences(text, from, to) {
    const found = [];
    const boundary = /(?<=[.!?]["'”’)\]]?)\s+(?=["'“‘(\[]?[\p{Lu}\p{N}])|\n\s*\n|\n(?=\s*(?:[-*+•]\s|\d+[.)]\s|#|\|))/gu;
    const part = text.slice(from, to);
    let start = 0;
    const push = (a, b) => {
      const slice = part.slice(a, b);
      const lead = slice.length - slice.trimStart().length;
      const body = slice.trim();
      if (/[\p{L}\p{N}]/u.test(body)) found.push([from + a + lead, from + a + lead + body.length]);
    };
    for (const match of part.matchAll(boundary)) {
      push(start, match.index);
      start = match.index + match[0].length;
    }
    push(start, part.length);
    return found;
  }

  function words(text) {
    const out = new Set();
    for (const word of text.toLowerCase().match(/[\p{L}\p{N}]+/gu) || []) {
      if (word.length < 3 || STOP.has(word)) continue;
      out.add(word.replace(/(?:ies|es|s|ed|ing)$/, "") || word);
    }
    return out;
  }

  /** Parts of the answer that cite [n], as [start, end] into its text. */
  function citingParts(answer, n) {
    const text = answer.text || "";
    const support = (answer.support || []).filter((s) => (s.citations || []).map(Number).includes(n));
    if (support.length) return support.map((s) => [s.start, s.end]);
    const parts = [];
    let from = 0;
    for (const group of text.matchAll(/(?:\s*\[\d+\])+/g)) {
      const cited = [...group[0].matchAll(/\[(\d+)\]/g)].map((m) => Number(m[1]));
      if (cited.includes(n)) parts.push([from, group.index]);
      from = group.index + group[0].length;
    }
    return parts;
  }

  /** The passage sentence that best matches a written (not quoted) sentence, or null. */
  function closest(text, said, passage) {
    const want = words(said);
    if (want.size < 2) return null;
    let best = null;
    let bestShare = 0;
    for (const sentence of sentences(text, passage[0], passage[1])) {
      const have = words(text.slice(sentence[0], sentence[1]));
      let shared = 0;
      for (const w of want) if (have.has(w)) shared += 1;
      const share = shared / want.size;
      if (shared >= 2 && share > bestShare) [best, bestShare] = [sentence, share];
    }
    return bestShare >= MIN_SHARE ? best : null;
  }

  /**
   * Highlight ranges for `[n]` of `answer` ({text, spans, support}) over `text`, whose cited
   * chunk is `passage` ([start, end] or null): outermost first, as `ragMarkdown.highlight` takes them.
   */
  function marks(text, passage, answer, n) {
    const where = passage || [0, text.length];
    const found = [];
    const bold = [];
    for (const [a, b] of citingParts(answer || {}, n)) {
      const said = (answer.text || "").slice(a, b).replace(/\[\d+\]/g, (m) => " ".repeat(m.length));
      const parts = sentences(said, 0, said.length);
      parts.forEach(([s, e], k) => {
        // Without the gap a removed [n] left before the full stop.
        const sentence = said.slice(s, e).replace(/\s+([.,;:!?])/g, "$1");
        let hit = find(text, sentence, where[0], where[1]);
        // A written sentence: the one the marker is attached to is matched by its words.
        if (!hit && k === parts.length - 1) hit = closest(text, sentence, where);
        if (!hit || found.some(([x, y]) => x === hit[0] && y === hit[1])) return;
        found.push(hit);
        for (const span of answer.spans || []) {
          if (span.start < a + s || span.end > a + e) continue;
          const words = (answer.text || "").slice(span.start, span.end);
          const inside = find(text, words, hit[0], hit[1]);
          if (inside) bold.push(inside);
        }
      });
    }
    const out = [];
    if (!found.length) {
      if (passage) out.push({ start: passage[0], end: passage[1], tag: "mark" });
      return out;
    }
    if (passage) out.push({ start: passage[0], end: passage[1], tag: "span", className: "passage" });
    for (const [start, end] of found) out.push({ start, end, tag: "mark" });
    for (const [start, end] of bold) out.push({ start, end, tag: "strong", className: "answer-span" });
    return out;
  }

  return { marks, sentences, citingParts };
})();
