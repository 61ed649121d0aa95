"""Sumo's term model for scope keywords: a keyword matches whole indexed terms, not substrings.

What Sumo's documentation says (docs/search/get-started-with-search/build-search/
keyword-search-expressions.md, "Phrases", and .../how-to-use-search-page/wildcards-in-full-text-searches.md
in SumoLogic/sumologic-documentation):

* "raw messages are broken into individual keyword terms ... defined by detecting boundaries around
  the characters found within the message, including white space, dashes, commas, question marks,
  exclamation points, brackets, and more." The worked example splits
  ``[com.test.services.test.TESTClientImpl] TEST Request:id=1234567`` into ``com``, ``test``,
  ``services``, ``test``, ``TESTClientImpl``, ``TEST``, ``Request``, ``id``, ``1234567``, and "the
  special characters ... would also be indexed as separate keywords."
* "you need to provide keywords in your query that *specifically match* those terms": ``456`` finds
  ``456`` only, ``*456*`` also finds ``1234567``; ``*`` is zero or more characters and ``?`` exactly
  one; "Keywords are case insensitive."
* A keyword spanning several terms (an e-mail or IP address) is a phrase: "the Sumo Logic search
  engine looks for the individual indexed terms that appear next to each other." A wildcard may stand
  for one full term (``jsmith@*.com``) but "not a partial term: ``jsmith@some*re.com``".
* Quoted phrases are matched with "consecutive whitespace characters ... replaced with a single
  space", whitespace being Java's definition (listed in the same page).

The tokenizer derived from this (docs/sumo-semantics.md lists the choices): a term is a maximal run of
letters and digits (Unicode ``\\p{L}``/``\\p{N}``); every other character that is not Java whitespace is
a term of its own; whitespace separates terms and is not a term. A keyword is split the same way with
``*``/``?`` counted as term characters, and matched as one RE2 search over ``_raw``: each term pattern
must cover a whole message term (a letter or digit may not touch it from outside), consecutive terms
must be adjacent, with whitespace between them exactly where the keyword has whitespace.
"""

from __future__ import annotations

from dataclasses import dataclass

import re2

#: Java whitespace (Character.isWhitespace), as the documentation lists it, in RE2 class syntax:
#: U+0009-U+000D, U+001C-U+001F, and the Unicode space separators except the non-breaking spaces
#: U+00A0, U+2007, U+202F (U+0020, U+1680, U+2000-U+2006, U+2008-U+200A, U+2028, U+2029, U+205F, U+3000).
JAVA_WS_CLASS = r"\t-\r\x1c-\x20\x{1680}\x{2000}-\x{2006}\x{2008}-\x{200a}\x{2028}\x{2029}\x{205f}\x{3000}"
_JAVA_WS = frozenset(
    [chr(c) for c in range(0x09, 0x0E)] + [chr(c) for c in range(0x1C, 0x21)]
    + ["\u1680", *(chr(c) for c in range(0x2000, 0x2007)), *(chr(c) for c in range(0x2008, 0x200B)),
       "\u2028", "\u2029", "\u205f", "\u3000"]
)
_ALNUM = r"\p{L}\p{N}"
_WILD = "*?"


def is_java_whitespace(ch: str) -> bool:
    return ch in _JAVA_WS


def is_term_char(ch: str) -> bool:
    """Letters and digits form terms (``str.isalnum`` is Unicode L* and N*, as RE2's \\p{L}\\p{N})."""
    return ch.isalnum()


@dataclass(frozen=True, slots=True)
class Term:
    text: str
    space_before: bool  # whitespace separates it from the previous term
    word: bool  # a run of letters/digits (and wildcards), not a single punctuation character


def split_terms(text: str, *, wildcards: bool = False) -> list[Term]:
    """Split ``text`` into terms; with ``wildcards`` ``*`` and ``?`` join letter/digit runs."""
    terms: list[Term] = []
    run: list[str] = []
    space = False
    run_space = False
    for ch in text:
        if is_java_whitespace(ch):
            if run:
                terms.append(Term("".join(run), run_space, True))
                run = []
            space = True
            continue
        if is_term_char(ch) or (wildcards and ch in _WILD):
            if not run:
                run_space = space
                space = False
            run.append(ch)
            continue
        if run:
            terms.append(Term("".join(run), run_space, True))
            run = []
        terms.append(Term(ch, space, False))
        space = False
    if run:
        terms.append(Term("".join(run), run_space, True))
    return terms


def keyword_problem(pattern: str) -> str | None:
    """Why Sumo's documentation refuses this keyword, or None.

    "If you are searching using a phrase query, Sumo Logic currently does not support partial-term
    wildcards *within* the phrase, such as ``jsmith@some*re.com``" (wildcards-in-full-text-searches.md).
    A wildcard may make up a whole term anywhere, lead the first term or end the last one.
    """
    terms = split_terms(pattern, wildcards=True)
    if len(terms) < 2:
        return None
    last = len(terms) - 1
    for i, t in enumerate(terms):
        if not t.word or not any(c in _WILD for c in t.text) or all(c in _WILD for c in t.text):
            continue
        body = t.text
        if i == 0:
            body = body.lstrip(_WILD)
        if i == last:
            body = body.rstrip(_WILD)
        if any(c in _WILD for c in body):
            return (f"Sumo does not support a partial-term wildcard inside a phrase ({t.text!r} in {pattern!r}); "
                    "a wildcard may stand for a whole term, e.g. jsmith@*.com")
    return None


def _term_regex(t: Term) -> str:
    if not t.word:
        return str(re2.escape(t.text))
    if all(c == "*" for c in t.text):
        return f"(?:[{_ALNUM}]+|[^{JAVA_WS_CLASS}{_ALNUM}])"  # one full term
    out = []
    for c in t.text:
        out.append(f"[{_ALNUM}]*" if c == "*" else f"[{_ALNUM}]" if c == "?" else str(re2.escape(c)))
    return "".join(out)


def keyword_regex(pattern: str) -> str | None:
    """The RE2 search for keyword ``pattern`` over ``_raw``; None when it matches every message.

    Leading and trailing whole-term ``*`` of a phrase are dropped: the search finds the phrase anywhere
    in the message already (a choice, docs/sumo-semantics.md).
    """
    terms = split_terms(pattern, wildcards=True)
    while terms and terms[0].word and all(c == "*" for c in terms[0].text):
        terms = terms[1:]
    while terms and terms[-1].word and all(c == "*" for c in terms[-1].text):
        terms = terms[:-1]
    if not terms:
        return None
    parts: list[str] = ["(?i)"]
    if terms[0].word:
        parts.append(f"(?:^|[^{_ALNUM}])")
    for i, t in enumerate(terms):
        if i and t.space_before:
            parts.append(f"[{JAVA_WS_CLASS}]+")
        parts.append(_term_regex(t))
    if terms[-1].word:
        parts.append(f"(?:$|[^{_ALNUM}])")
    return "".join(parts)
