"""`$text` queries for the embedded mongomock store, with MongoDB's semantics and restrictions.

mongomock does not implement `$text`. This module rewrites a query's `$text`
clause into `{"_id": {"$in": [matching ids]}}` computed from the collection's
text index, so `find`, `count_documents`, updates, deletes and a first-stage
`$match` in `aggregate` all see the documents a MongoDB server would return.

Semantics (MongoDB's, text index version 3, language "none"):
- the search string is parsed like the server's FTS query parser: words are
  runs of word characters (`\\w`); punctuation and white space delimit them;
  a `-` preceded by white space (or the start) negates the following word or
  quoted phrase; `"..."` is a phrase; an unclosed quote is no phrase;
- a document matches when any positive term is one of the tokens of a
  text-indexed field, every positive phrase is a substring of one indexed
  string, and no negated term or negated phrase occurs; a search with no
  positive term (only negations, only punctuation, empty) matches nothing;
- case- and diacritic-insensitive unless `$caseSensitive` /
  `$diacriticSensitive` say otherwise;
- the search string is never a regular expression.

Restrictions enforced as a server does: a text index is required
("text index required for $text query"); one `$text` per query, only at the
top level or under `$and` (not under `$nor`, `$not` or inside a field);
never together with `$near`/`$nearSphere`; in `aggregate` only in a
`$match` that is the first stage and never in `$geoNear.query`.

`{"$meta": "textScore"}` is available in the stages of an aggregation whose
first stage is the `$text` `$match` (`$addFields`/`$project`/`$set`, and
`$sort: {f: {"$meta": "textScore"}}`), scored as the server does with every
field weight 1; asked for without a `$text` match it fails (code 40218).

Known gaps (documented, not emulated): stemming and stop words of
languages other than "none" (AllyNet declares its text index with
`default_language: "none"`, so the server behaves as this fake does), field
weights other than 1, and textScore in `find()` projections or sorts
(NotImplementedError rather than a wrong answer: use an aggregation).
`$text` under `$or` is refused the same way.
"""
import functools
import re
import threading
import unicodedata

from mongomock import aggregate as mm_aggregate
from mongomock.collection import Collection
from pymongo.errors import OperationFailure

_installed = False
_lock = threading.Lock()

_TEXT_OPTIONS = {"$search", "$language", "$caseSensitive", "$diacriticSensitive"}
_NEAR_OPERATORS = {"$near", "$nearSphere"}
# Query tokens: white space, a quote, a dash, a word, or any other (delimiting) character.
_QUERY_TOKEN = re.compile(r'(?P<space>\s+)|(?P<quote>")|(?P<dash>-)|(?P<word>\w+)|(?P<other>.)', re.S)
_WORD = re.compile(r"\w+")


@functools.lru_cache(maxsize=65536)
def _fold(text, case_sensitive, diacritic_sensitive):
    # Cached: every query folds every indexed string of the collection again.
    if not diacritic_sensitive:
        decomposed = unicodedata.normalize("NFKD", text)
        text = unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))
    if not case_sensitive:
        text = text.casefold()
    return text


@functools.lru_cache(maxsize=65536)
def _tokens(folded):
    return frozenset(_WORD.findall(folded))


class TextSearch:
    """A parsed `$text` clause: positive/negated terms and phrases, with its matching options."""

    def __init__(self, spec):
        if not isinstance(spec, dict):
            raise OperationFailure("$text expects an object", code=2)
        extra = set(spec) - _TEXT_OPTIONS
        if extra:
            raise OperationFailure(f"extra fields in $text: {sorted(extra)[0]}", code=2)
        search = spec.get("$search")
        if not isinstance(search, str):
            raise OperationFailure("$search needs a String", code=2)
        for option in ("$caseSensitive", "$diacriticSensitive"):
            if option in spec and not isinstance(spec[option], bool):
                raise OperationFailure(f"{option} requires a boolean value", code=2)
        if "$language" in spec and not isinstance(spec["$language"], str):
            raise OperationFailure("$language requires a string value", code=2)
        self.case_sensitive = spec.get("$caseSensitive", False)
        self.diacritic_sensitive = spec.get("$diacriticSensitive", False)
        self.terms, self.negated_terms = set(), set()
        # Positive terms as the index stores them (always case- and diacritic-folded): used for scores.
        self.index_terms = set()
        self.phrases, self.negated_phrases = [], []
        self._parse(search)

    def fold(self, text):
        """Normalise text the way the index compares it (case and diacritics folded unless sensitive)."""
        return _fold(text, self.case_sensitive, self.diacritic_sensitive)

    def _parse(self, search):
        # Mirrors the server's FTSQueryImpl::parse: negation lasts to the next white space,
        # terms inside a negated phrase are not terms, an unclosed quote makes no phrase.
        in_negation = in_phrase = False
        previous_white_space = True
        quote_end = 0
        for match in _QUERY_TOKEN.finditer(search):
            kind = match.lastgroup
            if kind == "space":
                if not in_phrase:
                    in_negation = False
                previous_white_space = True
                continue
            if kind == "word":
                if not (in_phrase and in_negation):
                    (self.negated_terms if in_negation else self.terms).add(self.fold(match.group()))
                    if not in_negation:
                        self.index_terms.add(_fold(match.group(), False, False))
            elif kind == "dash":
                if not in_phrase and previous_white_space:
                    in_negation = True
            elif kind == "quote":
                if in_phrase:
                    phrase = self.fold(search[quote_end:match.start()])
                    (self.negated_phrases if in_negation else self.phrases).append(phrase)
                    in_phrase = in_negation = False
                else:
                    in_phrase = True
                    if in_negation and previous_white_space:
                        in_negation = False
                    quote_end = match.end()
            previous_white_space = False

    def matches(self, strings):
        """True when the indexed strings of one document satisfy this search."""
        if not self.terms:
            return False
        folded = [self.fold(value) for value in strings]
        tokens = set().union(*(_tokens(value) for value in folded))
        if tokens & self.negated_terms or not tokens & self.terms:
            return False
        if any(phrase in value for phrase in self.negated_phrases for value in folded):
            return False
        return all(any(phrase in value for value in folded) for phrase in self.phrases)


def text_score(search, strings):
    """MongoDB's textScore of one document (FTSSpec::_scoreStringV2 with every weight 1).

    Per indexed string and term: freq = sum of 1/2^k over its k-th occurrence,
    coeff = 0.5 * count / tokens + 0.5, times 1.1 when the term is the whole
    string; summed over strings, then over the query's positive terms.
    """
    per_term = {}
    for raw in strings:
        tokens = _WORD.findall(_fold(raw, False, False))
        stats = {}
        for token in tokens:
            exp, count, freq = stats.get(token, (0, 0, 0.0))
            exp = exp * 2 if exp else 1
            stats[token] = (exp, count + 1, freq + 1.0 / exp)
        for term, (_, count, freq) in stats.items():
            coeff = 0.5 * count / len(tokens) + 0.5
            adjustment = 1.1 if len(raw) == len(term) and raw.casefold() == term else 1.0
            per_term[term] = per_term.get(term, 0.0) + freq * coeff * adjustment
    return sum(per_term.get(term, 0.0) for term in search.index_terms)


def _text_fields(collection):
    """The fields of the collection's text index (["$**"] for a wildcard one), or None without one."""
    for index in collection.index_information().values():
        keys = index.get("key", [])
        fields = [field for field, kind in keys if kind == "text"]
        if fields:
            return fields
    return None


def _strings_at(value, path):
    """Every string found at a dotted path, descending through arrays as MongoDB does."""
    if isinstance(value, list):
        for item in value:
            yield from _strings_at(item, path)
        return
    if not path:
        if isinstance(value, str):
            yield value
        return
    if isinstance(value, dict):
        head, _, rest = path.partition(".")
        if head in value:
            yield from _strings_at(value[head], rest)


def _all_strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _all_strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _all_strings(item)


def _indexed_strings(document, fields):
    if "$**" in fields:
        return [s for key, value in document.items() if key != "_id" for s in _all_strings(value)]
    return [s for field in fields for s in _strings_at(document, field)]


def _contains_key(value, keys):
    if isinstance(value, dict):
        return any(key in keys or _contains_key(item, keys) for key, item in value.items())
    if isinstance(value, list):
        return any(_contains_key(item, keys) for item in value)
    return False


def _find_text(query):
    """(path of $and indices, spec) of the one `$text` clause of a filter, or None; raises where illegal."""
    found = []

    def walk(node, trail):
        if not isinstance(node, dict):
            return
        for key, value in node.items():
            if key == "$text":
                found.append((trail, value))
            elif key == "$and" and isinstance(value, list):
                for position, clause in enumerate(value):
                    walk(clause, trail + (position,))
            elif key == "$or" and isinstance(value, list):
                if any(_contains_key(clause, {"$text"}) for clause in value):
                    raise NotImplementedError("$text under $or is not emulated by the embedded store")
            elif key == "$nor" and isinstance(value, list):
                if any(_contains_key(clause, {"$text"}) for clause in value):
                    raise OperationFailure("text expression not allowed in nor", code=2)
            elif _contains_key(value, {"$text"}):
                raise OperationFailure("$text can only be used at the top level of a query", code=2)

    walk(query, ())
    if len(found) > 1:
        raise OperationFailure("Too many text expressions", code=2)
    return found[0] if found else None


def _replace_text(query, trail, replacement):
    """A copy of the filter with the `$text` clause at `trail` replaced by `replacement`."""
    if not trail:
        rest = {key: value for key, value in query.items() if key != "$text"}
        if not replacement:
            return rest
        return {"$and": [replacement, rest]} if rest else replacement
    copy = dict(query)
    clauses = list(copy["$and"])
    clauses[trail[0]] = _replace_text(clauses[trail[0]], trail[1:], replacement)
    copy["$and"] = clauses
    return copy


def _plan(collection, query):
    """(filter without `$text`, TextSearch, indexed fields) for a filter with `$text`, else None.

    Validates like a server: placement, one clause, no near, a text index.
    """
    if not isinstance(query, dict):
        return None
    located = _find_text(query)
    if located is None:
        return None
    if _contains_key(query, _NEAR_OPERATORS):
        raise OperationFailure("text and geoNear not allowed in same query", code=2)
    trail, spec = located
    search = TextSearch(spec)
    fields = _text_fields(collection)
    if fields is None:
        # The server parses $text against the collection's text index, even when it does not exist.
        missing = "" if collection._store.is_created else f" (no such collection '{collection.full_name}')"
        raise OperationFailure(f"text index required for $text query{missing}", code=27)
    return _replace_text(query, trail, {}), search, fields


def _id_key(value):
    try:
        hash(value)
        return value
    except TypeError:  # document or array ids
        return repr(value)


def _matching_ids(collection, search, fields):
    return {_id_key(document["_id"]) for document in collection._store.documents
            if search.matches(_indexed_strings(document, fields))}


def _asks_text_score(value):
    if isinstance(value, dict):
        return value.get("$meta") == "textScore" or any(_asks_text_score(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return any(_asks_text_score(item) for item in value)
    return False


def _refuse_text_score(*specs):
    if any(_asks_text_score(spec) for spec in specs):
        raise NotImplementedError('{"$meta": "textScore"} is not emulated by the embedded store')


def _patch_find(original):
    @functools.wraps(original)
    def find(self, filter=None, projection=None, *args, **kwargs):
        # Validate now, before the geo layer sees a $near; _iter_documents does the matching.
        _plan(self, filter)
        _refuse_text_score(projection, kwargs.get("sort"))
        return original(self, filter, projection, *args, **kwargs)

    return find


def _patch_iter_documents(original):
    @functools.wraps(original)
    def _iter_documents(self, filter):
        plan = _plan(self, filter)
        if plan is None:
            return original(self, filter)
        rest, search, fields = plan
        # A set lookup per document: mongomock's $in over a long id list is quadratic.
        matched = _matching_ids(self, search, fields)
        return (document for document in original(self, rest) if _id_key(document["_id"]) in matched)

    return _iter_documents


_SCORE_FIELD = "__allynet_text_score"


def _with_score_field(value):
    """A stage with every {"$meta": "textScore"} turned into a reference to the hidden score field."""
    if isinstance(value, dict):
        if value == {"$meta": "textScore"}:
            return "$" + _SCORE_FIELD
        return {key: _with_score_field(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_score_field(item) for item in value]
    return value


def _sort_with_score(options):
    # In $sort, {"$meta": "textScore"} means "by score, best first", whatever the key is called.
    return {(_SCORE_FIELD if direction == {"$meta": "textScore"} else key):
            (-1 if direction == {"$meta": "textScore"} else direction)
            for key, direction in options.items()}


def _text_pipeline(collection, pipeline, session):
    """Run a pipeline whose first stage is a `$match` with `$text`, textScore included."""
    rest, search, fields = _plan(collection, pipeline[0]["$match"])
    documents = []
    for document in collection.find(rest):
        strings = _indexed_strings(document, fields)
        if search.matches(strings):
            document[_SCORE_FIELD] = text_score(search, strings)
            documents.append(document)
    stages = []
    for stage in pipeline[1:]:
        if isinstance(stage, dict) and isinstance(stage.get("$sort"), dict):
            stages.append({"$sort": _sort_with_score(stage["$sort"])})
        else:
            stages.append(_with_score_field(stage))
    stages.append({"$project": {_SCORE_FIELD: 0}})
    return mm_aggregate.process_pipeline(documents, collection.database, stages, session)


def _patch_aggregate(original):
    @functools.wraps(original)
    def aggregate(self, pipeline, session=None, **kwargs):
        pipeline = list(pipeline)
        text_first = False
        for position, stage in enumerate(pipeline):
            if not isinstance(stage, dict):
                continue
            geo_near = stage.get("$geoNear")
            if isinstance(geo_near, dict) and _contains_key(geo_near.get("query"), {"$text"}):
                raise OperationFailure("$geoNear is not allowed to have a $text query", code=2)
            if "$match" in stage and _contains_key(stage["$match"], {"$text"}):
                if position != 0:
                    raise OperationFailure(
                        "$match with $text is only allowed as the first pipeline stage", code=17313)
                text_first = True
            elif position > 0 and not text_first and _asks_text_score(stage):
                raise OperationFailure("query requires text score metadata, but it is not available",
                                       code=40218)
        if text_first:
            return _text_pipeline(self, pipeline, session)
        return original(self, pipeline, session=session, **kwargs)

    return aggregate


def install():
    """Teach mongomock's Collection `$text` (idempotent; installed by allynet.embedded)."""
    global _installed
    with _lock:
        if _installed:
            return
        Collection.find = _patch_find(Collection.find)
        Collection._iter_documents = _patch_iter_documents(Collection._iter_documents)
        Collection.aggregate = _patch_aggregate(Collection.aggregate)
        _installed = True
