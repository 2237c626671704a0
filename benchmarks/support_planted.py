"""How often the support check calls a planted false sentence supported.

    python benchmarks/support_planted.py [--seed 0] [--show 3]

Every sentence of the articles in ``data/`` is taken as a model would write it, citing the
paragraph it comes from ([1], with the two paragraphs after it as [2] and [3], as retrieval
returns neighbours).  From it, false sentences are planted that keep every word in the
sources, so that only a check of the claim can catch them:

- ``swapped name``: a name of the sentence replaced by a name from another sentence of the
  same paragraph ("King David I" -> "King Alexander I");
- ``wrong number``: a number replaced by another number of the same paragraph;
- ``negation``: "not" after the first "was", "had", "could" ...

Printed per kind: sentences, those marked supported; then the precision of ``supported``
over them all (true sentences marked supported / all marked supported) and the recall on
the true ones.  A swap can by chance say something true; ``--show`` prints examples of the
planted sentences still supported, to check by hand.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.answer import support
from rag.results import Hit

ARTICLES = Path(__file__).resolve().parents[1] / "data" / "articles"
_NAME = re.compile(r"(?<=\s)[A-Z][a-z]+(?:\s+[A-Z][a-z]+)*")
_NUMBER = re.compile(r"(?<![\w.,$])\d{2,4}(?![\w.,%])")
_AUXILIARY = re.compile(r"\b(was|were|is|are|had|has|could|would|did|can|will)\b")


def paragraphs() -> list[tuple[str, str]]:
    """(file, paragraph) of every paragraph of prose in the articles."""
    found = []
    for path in sorted(ARTICLES.glob("*.md")):
        for block in path.read_text(encoding="utf-8").split("\n\n"):
            block = " ".join(block.split())
            if block and not block.startswith(("#", "|", "-", "*")) and len(support.sentences(block)) >= 2:
                found.append((path.name, block))
    return found


def plant(sentence: str, others: list[str], rng: random.Random) -> dict[str, str]:
    """The planted variants of ``sentence`` (a kind may be missing when nothing fits)."""
    planted = {}
    names = set(_NAME.findall(sentence))
    elsewhere = sorted({n for o in others for n in _NAME.findall(o)} - names)
    if names and elsewhere:
        old = rng.choice(sorted(names))
        planted["swapped name"] = sentence.replace(old, rng.choice(elsewhere), 1)
    numbers = set(_NUMBER.findall(sentence))
    other_numbers = sorted({n for o in others for n in _NUMBER.findall(o)} - numbers)
    if numbers and other_numbers:
        old = rng.choice(sorted(numbers))
        planted["wrong number"] = re.sub(rf"(?<![\w.,$]){old}(?![\w.,%])", rng.choice(other_numbers), sentence, count=1)
    auxiliary = _AUXILIARY.search(sentence)
    if auxiliary and " not " not in sentence and "n't" not in sentence:
        planted["negation"] = sentence[: auxiliary.end()] + " not" + sentence[auxiliary.end() :]
    return planted


def hit(n: int, file: str, text: str) -> Hit:
    return Hit(rank=n, score=1.0 / n, chunk_id=f"c{n}", source=file, page=None, heading="", text=text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", type=int, default=3, help="planted sentences still supported to print, per kind")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    found = paragraphs()
    counts: dict[str, list[int]] = {}
    leaks: dict[str, list[str]] = {}
    for i, (_, text) in enumerate(found):
        context = [hit(n + 1, f, t) for n, (f, t) in enumerate(found[i : i + 3])]
        sentences = [text[a:b] for a, b in support.sentences(text)]
        for j, sentence in enumerate(sentences):
            if len(sentence.split()) < 6:
                continue
            variants = {"true": sentence, **plant(sentence, sentences[:j] + sentences[j + 1 :], rng)}
            for kind, variant in variants.items():
                verdicts = support.check(variant.rstrip(".") + " [1].", context)
                backed = bool(verdicts) and all(v.supported for v in verdicts)
                total, supported = counts.setdefault(kind, [0, 0])
                counts[kind] = [total + 1, supported + backed]
                if backed and kind != "true":
                    leaks.setdefault(kind, []).append(variant)
    print(f"{len(found)} paragraphs of {ARTICLES.relative_to(ARTICLES.parents[1])}")
    print("| sentences | n | marked supported |")
    print("| --- | --- | --- |")
    for kind, (total, supported) in counts.items():
        print(f"| {kind} | {total} | {supported} ({supported / max(1, total):.1%}) |")
    right = counts["true"][1]
    wrong = sum(s for k, (_, s) in counts.items() if k != "true")
    print(f"\nprecision of supported: {right / max(1, right + wrong):.1%} ({right} of {right + wrong})")
    print(f"recall on true sentences: {right / max(1, counts['true'][0]):.1%}")
    for kind, sentences in leaks.items():
        for sentence in sentences[: args.show]:
            print(f"  {kind} still supported: {sentence}")


if __name__ == "__main__":
    main()
