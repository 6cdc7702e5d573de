"""Full-text search over search documents: SQLite FTS5 (BM25) in the embedded default,
PostgreSQL full-text search (``to_tsvector('simple', msearch_fold(...))`` with its GIN index) on
PostgreSQL. Both fold accents: "paques" finds "Pâques".

User input is never passed through as query syntax: it is split into words (and "quoted
phrases"), each quoted for FTS5 or turned into a tsquery by ``plainto_tsquery``, and the words are
OR-ed so that a document matching most of a long query still ranks (BM25 / ``ts_rank_cd`` favour
documents matching more and rarer words). Short function words of the catalogue's common languages
are dropped, because with OR they would match nearly everything.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from sqlalchemy import Select, column, func, literal_column, select, table
from sqlalchemy.orm import Session

from ..models.search import FTS_TABLE, SearchDocument
from .text_folding import fold, term_pattern, words

MAX_TERMS = 32
_PHRASE = re.compile(r'"([^"]+)"')
_CHUNK = re.compile(r"\w+", re.UNICODE)  # a run of words joined by "_" or alone
_STOP_WORDS = frozenset("""
a an and are as at be by for from in into is it of on or that the this to with
au aux de des du en et la le les un une par pour sur dans
der die das den dem des ein eine und in im mit von zu auf
il lo gli di da del della dei delle e con per su
el los las y con por
ad cum et in est per sub
""".split())


@dataclass
class FulltextHit:
    document_id: int
    score: float  # higher is better (negated BM25 on SQLite, ts_rank_cd on PostgreSQL)


def query_terms(query: str) -> list[str]:
    """The words and quoted phrases of ``query`` that are searched, in order, without duplicates.

    Words are split as the indexes split them (text_folding.words); a run like "ms_bnf_fr",
    which they read as three words in a row, is kept as the phrase "ms bnf fr"."""
    terms: list[str] = []
    for phrase in _PHRASE.findall(query):
        parts = words(phrase)
        if parts:
            terms.append(" ".join(parts))
    rest = _PHRASE.sub(" ", query)
    chunks = [" ".join(words(chunk)) for chunk in _CHUNK.findall(rest)]
    chunks = [chunk for chunk in chunks if chunk]
    content = [w for w in chunks if " " in w or w.casefold() not in _STOP_WORDS and len(w) > 1 or w.isdigit()]
    for word in content or chunks:  # a query of only stop words still searches them
        if word not in terms:
            terms.append(word)
    return terms[:MAX_TERMS]


def _fts5_match(terms: list[str]) -> str:
    # Each term is an FTS5 string (double quotes, inner quotes doubled): no operator can leak in.
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)


def search_fulltext(session: Session, query: str, limit: int,
                    allowed_documents: Optional[Select] = None) -> list[FulltextHit]:
    """Documents matching ``query``, best first (ties by id), at most ``limit``.

    ``allowed_documents`` is a ``SELECT search_documents.id`` restricting the search (filters).
    Raises ValueError for a query with no searchable word.
    """
    terms = query_terms(query)
    if not terms:
        raise ValueError("the query has no word to search for")
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        fts = table(FTS_TABLE, column("rowid"))
        rank = func.bm25(literal_column(FTS_TABLE)).label("rank")
        statement = (select(SearchDocument.id, rank)
                     .select_from(fts.join(SearchDocument, SearchDocument.id == fts.c.rowid))
                     .where(literal_column(FTS_TABLE).op("MATCH")(_fts5_match(terms)))
                     .order_by(rank, SearchDocument.id))
        sign = -1.0  # BM25 in FTS5 is lower-is-better
    elif dialect == "postgresql":
        config = literal_column("'simple'::regconfig")
        # phraseto_tsquery keeps a quoted phrase's word order; for one word it equals plainto_tsquery.
        # msearch_fold (migration 0005) folds accents on both sides, as FTS5 does on SQLite.
        tsquery = func.phraseto_tsquery(config, func.msearch_fold(terms[0]))
        for term in terms[1:]:
            tsquery = tsquery.op("||")(func.phraseto_tsquery(config, func.msearch_fold(term)))
        # The same expression as the GIN index of migration 0005, so that the index is used.
        vector = func.to_tsvector(config, func.msearch_fold(SearchDocument.text))
        rank = func.ts_rank_cd(vector, tsquery).label("rank")
        statement = (select(SearchDocument.id, rank).where(vector.op("@@")(tsquery))
                     .order_by(rank.desc(), SearchDocument.id))
        sign = 1.0
    else:
        raise ValueError(f"full-text search is not available on {dialect}")
    if allowed_documents is not None:
        statement = statement.where(SearchDocument.id.in_(allowed_documents))
    rows = session.execute(statement.limit(int(limit))).all()
    return [FulltextHit(int(doc_id), sign * float(score)) for doc_id, score in rows]


def snippet(text_value: str, query: str, width: int = 160) -> str:
    """A window of ``text_value`` around the first searched term (accent- and case-insensitive)."""
    if len(text_value) <= width:
        return text_value
    folded = fold(text_value)
    matches = [pattern.search(folded) for pattern in map(term_pattern, query_terms(query)) if pattern]
    positions = [match.start() for match in matches if match]
    start = max(0, min(positions) - width // 3) if positions else 0
    piece = text_value[start:start + width]
    return ("…" if start > 0 else "") + piece + ("…" if start + width < len(text_value) else "")
