"""The shape of a SQL statement: how much of a table it reads, from pglast, cached.

The engine asks for the shape of every audited statement, up to a million of them, so a shape is
parsed once and then found again: by the exact text (one dict lookup), else by the pglast
fingerprint, which is the same for texts that differ only in their constants (`id = 42`,
`id = 43`, even `id = $1`). Constants still matter (LIMIT 500, the key 42), so a fingerprint
hit takes them from the text with a small regex lexer, never a second parse. Texts of one
fingerprint can still differ in where their constants sit (`IN (1,2)` / `IN (1,2,3)`, `LIMIT 5
OFFSET 9` / `OFFSET 9 LIMIT 5`), so the lexer also yields the text with comments dropped and
each constant replaced by a marker, its *skeleton*: two texts of one fingerprint and one
skeleton hold their constants at the same token positions. A shape without such values
(`SELECT * FROM t`, `UPDATE ...`) is reused from the fingerprint alone, without lexing.

Measured here on a 170-character join with WHERE and LIMIT: `parse_sql` (Python node objects)
~8k/s; `parse_sql_json` ~120k/s, decoded by msgspec ~40k/s together (json.loads: ~30k/s), so
that is the parse used; `fingerprint` ~110k/s. Through the cache: a text hit 0.06 us, a
fingerprint hit 7 us (19 us when the text's constants are lexed), a miss ~65 us.

The work is split in modules: `core.sqlshape` (the Shape value), `core.sqltree` and
`core.sqlnodes` (the parse), `core.sqllex` (the lexer and its recipes); this module is the cache,
and the one to import from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum
from typing import Final

from pglast.parser import fingerprint

from core.sqllex import MARK, Lexed, Recipe, lex, make_recipe
from core.sqlshape import UNPARSED, WIDTH, Shape, ShapeKind
from core.sqltree import analyse

__all__ = [
    "MAX_TEXT_KEY",
    "UNPARSED",
    "WIDTH",
    "Shape",
    "ShapeCache",
    "ShapeKind",
    "ShapeStats",
    "shape_of",
]


@dataclass(frozen=True, slots=True)
class ShapeStats:
    """How `ShapeCache.shape` answered: `parses` counts full parses, `failures` texts that came
    out unparsed (not SQL, psql variables, empty)."""

    text_hits: int = 0
    fingerprint_hits: int = 0
    parses: int = 0
    failures: int = 0


MAX_TEXT_KEY: Final = 4096
"""Longer texts (and skeletons) are not dict keys: a few huge statements would hold megabytes."""


def shape_of(text: str) -> Shape:
    """The shape of a statement text, uncached; never raises.

    >>> shape_of("SELECT * FROM crm.clients LIMIT 500 OFFSET 20000").describe()
    'SELECT * without WHERE, LIMIT 500 OFFSET 20000'
    """
    if MARK in text:
        return UNPARSED
    try:
        analysis = analyse(text)
    except Exception:  # parse errors, unencodable text, too deep: all mean "not a shape we know"
        return UNPARSED
    return UNPARSED if analysis is None else analysis.shape


# ------------------------------------------------------------------------------ the cache


def _digest(lexed: Lexed) -> str:
    """The skeleton as a dict key: itself when short, else a 128-bit digest of it."""
    skeleton = lexed.skeleton
    if len(skeleton) <= MAX_TEXT_KEY:
        return skeleton
    digest = hashlib.blake2b(skeleton.encode(errors="replace"), digest_size=16).hexdigest()
    return MARK + MARK + digest  # no skeleton of valid SQL starts with two constants


class _Via(Enum):
    LEX = "lex"  # the fingerprint's shape needs values from the text: see the variants
    PARSE = "parse"  # the fingerprint does not fix the kind (GROUP BY 2): parse every new text


class ShapeCache:
    """Shapes by text, then by fingerprint, parsing only texts of a new form.

    Each dict is cleared when it reaches its bound rather than kept as an LRU: an LRU would
    reorder on every hit of the hot path, while statement texts are heavy-tailed and the few
    that matter come straight back (and a text-cache clear still finds them by fingerprint).
    """

    __slots__ = (
        "_failures",
        "_fingerprint_hits",
        "_fingerprints",
        "_max_fingerprints",
        "_max_texts",
        "_parses",
        "_text_hits",
        "_texts",
        "_variants",
    )

    def __init__(self, max_texts: int = 50_000, max_fingerprints: int = 20_000) -> None:
        self._max_texts = max_texts
        self._max_fingerprints = max_fingerprints
        self._texts: dict[str, Shape] = {}
        self._fingerprints: dict[str, Shape | _Via] = {}
        self._variants: dict[tuple[str, str], Recipe] = {}
        self._text_hits = self._fingerprint_hits = self._parses = self._failures = 0

    @property
    def stats(self) -> ShapeStats:
        """Counts so far."""
        return ShapeStats(self._text_hits, self._fingerprint_hits, self._parses, self._failures)

    def shape(self, text: str) -> Shape:
        """The shape of a statement text; never raises (unparsable: `parsed=False`, OTHER)."""
        shape = self._texts.get(text)
        if shape is not None:
            self._text_hits += 1
            return shape
        shape = self._miss(text)
        if len(text) <= MAX_TEXT_KEY:
            if len(self._texts) >= self._max_texts:
                self._texts.clear()
            self._texts[text] = shape
        return shape

    def _miss(self, text: str) -> Shape:
        if MARK in text:
            self._failures += 1
            return UNPARSED
        try:
            key = fingerprint(text)
        except Exception:  # parse errors, unencodable text, too deep
            self._failures += 1
            return UNPARSED
        entry = self._fingerprints.get(key)
        lexed: Lexed | None = None
        if isinstance(entry, Shape):
            self._fingerprint_hits += 1
            return entry
        if entry is _Via.LEX:
            lexed = lex(text)
            recipe = None if lexed is None else self._variants.get((key, _digest(lexed)))
            if lexed is not None and recipe is not None:
                shape = recipe.shape(lexed.tokens)
                if shape is not None:
                    self._fingerprint_hits += 1
                    return shape
        return self._parse(text, key, lexed)

    def _parse(self, text: str, key: str, lexed: Lexed | None) -> Shape:
        self._parses += 1
        try:
            analysis = analyse(text)
        except Exception:  # the fingerprint parsed it, so only "too deep" and the like
            analysis = None
        if analysis is None:
            self._failures += 1
            return UNPARSED
        found = analysis.found
        if len(self._fingerprints) >= self._max_fingerprints:
            self._fingerprints.clear()
        if not found.cacheable:
            self._fingerprints[key] = _Via.PARSE
        elif not found.positions:
            self._fingerprints[key] = analysis.shape
        else:
            self._fingerprints[key] = _Via.LEX
            lexed = lexed or lex(text)
            recipe = None if lexed is None else make_recipe(text, analysis, lexed)
            if lexed is not None and recipe is not None:
                if len(self._variants) >= self._max_fingerprints:
                    self._variants.clear()
                self._variants[(key, _digest(lexed))] = recipe
        return analysis.shape
