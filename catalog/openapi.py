"""The OpenAPI 3.1 description of the JSON API, served at /api/openapi.json. Choices and limits
come from the code that checks them (forms, search, models), so the two never disagree."""

from __future__ import annotations

from catalog.forms import MAX_K, MAX_PAGE
from catalog.models import ImportJob
from catalog.search import MODES, SORTS

PHOTO = {
    "type": "object",
    "required": ["position", "image_url", "thumbnail_url"],
    "properties": {
        "position": {
            "type": "integer",
            "minimum": 0,
            "description": "0: the product's main photo (CSV `image`); 1, 2, ...: the CSV's `images` in order",
        },
        "image_url": {"type": ["string", "null"], "format": "uri"},
        "thumbnail_url": {"type": ["string", "null"], "format": "uri"},
    },
}
RESULT = {
    "type": "object",
    "required": ["sku", "title", "category", "price", "score", "image_url", "thumbnail_url"],
    "properties": {
        "sku": {"type": "string"},
        "title": {"type": "string"},
        "category": {"type": "string"},
        "price": {"type": "number"},
        "score": {"type": "number", "description": "relevance; higher is better"},
        "image_url": {"type": "string", "format": "uri"},
        "thumbnail_url": {"type": "string", "format": "uri"},
        "url": {"type": "string", "format": "uri", "description": "the product's page"},
        "photos": {"type": "array", "items": PHOTO, "description": "every photo of the product, main photo first"},
        "matched_photo": {
            "oneOf": [PHOTO, {"type": "null"}],
            "description": "the photo that placed this product: a product scores by its best photo, in a photo "
            "search and for words against photos; null when no photo list placed it (keywords, "
            "words against descriptions)",
        },
        "sources": {
            "type": "object",
            "additionalProperties": {"type": "number"},
            "description": "the score each ranked list gave this product: semantic, keyword, image, composed",
        },
        "explanation": {
            "type": "array",
            "description": "which ranked lists placed this product and with what weight, biggest contribution "
            "first; the contributions sum to `score` (reciprocal rank fusion: weight / (k + rank), "
            "normalised; one list alone: its own score). A list that did not return the product "
            "has rank null and contributes 0",
            "items": {
                "type": "object",
                "required": ["signal", "label", "rank", "score", "weight", "contribution"],
                "properties": {
                    "signal": {
                        "type": "string",
                        "description": "keyword, text_minilm, text_photo, text_joint, "
                        "photo_pretrained, photo_joint, image, composed, "
                        "popularity (clicks, when SEARCH_POPULARITY_WEIGHT > 0)",
                    },
                    "label": {"type": "string", "description": "the signal in words"},
                    "rank": {"type": ["integer", "null"], "minimum": 1},
                    "score": {"type": ["number", "null"], "description": "the list's own score for the product"},
                    "weight": {"type": "number"},
                    "contribution": {"type": "number"},
                },
            },
        },
    },
}
ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "retry_after": {"type": "integer", "description": "429 only: seconds until the client may try again"},
    },
}


def response(query_schema: dict) -> dict:
    return {
        "type": "object",
        "required": ["query", "took_ms", "results"],
        "properties": {
            "query": query_schema,
            "query_id": {
                "type": ["string", "null"],
                "format": "uuid",
                "description": "this search in the search log: report an opened result with POST /api/click; "
                "pass it back as query_id when fetching another page of the same search. "
                "null when SEARCH_LOG_ENABLED is off",
            },
            "took_ms": {"type": "number"},
            "results": {"type": "array", "items": {"$ref": "#/components/schemas/Result"}},
            "mode": {"type": "string", "enum": list(MODES)},
            "sort": {"type": "string", "enum": list(SORTS)},
            "page": {"type": "integer"},
            "k": {"type": "integer"},
            "has_next": {"type": "boolean"},
            "total_candidates": {
                "type": "integer",
                "description": "ranked candidates after min_score; lists are read SEARCH_CANDIDATES (200) deep",
            },
            "model": {"type": ["string", "null"], "description": "the embedding model that answered"},
            "corrected_query": {
                "type": ["string", "null"],
                "description": "the words searched instead of misspelt ones (keyword and hybrid mode; correct=false "
                "turns it off); null when nothing was corrected",
            },
            "corrections": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "each corrected word and its correction",
            },
            "facets": {"$ref": "#/components/schemas/Facets"},
            "text_weight": {
                "type": ["number", "null"],
                "description": "how much the words weighed against the photo; null unless the search had both",
            },
            "searched": {
                "type": ["string", "null"],
                "description": "the words searched for: q less its words to avoid, after correction",
            },
            "examples": {
                "type": "object",
                "description": "the examples searched with (see the like, unlike, "
                "like_img, unlike_img and avoid parameters); avoid "
                'includes q\'s own "not x" and "-x"',
                "properties": {name: {"type": "array", "items": {"type": "string"}} for name in EXAMPLE_FIELDS},
            },
        },
    }


FACETS = {
    "type": "object",
    "description": "only with facets=true. Counts of the products the query matches: in keyword mode (text only, "
    "no min_score) every full-text match; otherwise the top SEARCH_CANDIDATES candidates of the "
    "query without category and price filters; without words or photo the whole catalogue. "
    "Category counts apply the price filter, price buckets the category filter.",
    "required": ["basis", "matched", "categories", "prices"],
    "properties": {
        "basis": {"type": "string", "enum": ["full_text", "candidates", "catalogue"]},
        "matched": {"type": "integer", "description": "matched products passing the price filter"},
        "pool": {
            "type": ["integer", "null"],
            "description": "basis candidates: the size of the candidate pool, before filters; else null",
        },
        "categories": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "count", "selected"],
                "properties": {
                    "name": {"type": "string"},
                    "count": {"type": "integer", "minimum": 0},
                    "selected": {"type": "boolean"},
                },
            },
        },
        "prices": {
            "type": "array",
            "description": "a histogram: consecutive buckets, both ends inclusive "
            "(pass them as min_price and max_price)",
            "items": {
                "type": "object",
                "required": ["min_price", "max_price", "count", "selected"],
                "properties": {
                    "min_price": {"type": "number"},
                    "max_price": {"type": "number"},
                    "count": {"type": "integer", "minimum": 0},
                    "selected": {"type": "boolean"},
                },
            },
        },
    },
}
SUGGESTIONS = {
    "type": "object",
    "required": ["query", "suggestions"],
    "properties": {
        "query": {"type": "string"},
        "suggestions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["text", "kind", "url"],
                "properties": {
                    "text": {"type": "string"},
                    "kind": {
                        "type": "string",
                        "enum": ["query", "category", "product"],
                        "description": "query: a popular past search (url runs it)",
                    },
                    "url": {
                        "type": "string",
                        "format": "uri",
                        "description": "the category's listing or the product's page",
                    },
                },
            },
        },
    },
}


IMPORT = {
    "type": "object",
    "description": "an import job: rows read so far, their outcome, and how many of its products are searchable",
    "required": [
        "id",
        "url",
        "status",
        "total_rows",
        "processed_rows",
        "percent",
        "created",
        "updated",
        "unchanged",
        "failed",
        "duplicates",
        "to_embed",
        "embedded",
        "errors",
        "error_message",
        "notes",
    ],
    "properties": {
        "id": {"type": "integer"},
        "url": {"type": "string", "format": "uri", "description": "this job: poll it with GET"},
        "source": {"type": "string", "description": "the uploaded file's name"},
        "status": {
            "type": "string",
            "enum": list(ImportJob.Status.values),
            "description": "embedding: every row is stored, vectors are being computed; done: every "
            "created or updated product is searchable; failed: see error_message",
        },
        "total_rows": {"type": "integer", "minimum": 0, "description": "data rows in the file (0 until read)"},
        "processed_rows": {"type": "integer", "minimum": 0},
        "percent": {"type": "integer", "minimum": 0, "maximum": 100, "description": "rows processed"},
        "created": {"type": "integer", "minimum": 0},
        "updated": {"type": "integer", "minimum": 0},
        "unchanged": {"type": "integer", "minimum": 0},
        "failed": {"type": "integer", "minimum": 0, "description": "bad rows, each listed in errors"},
        "duplicates": {"type": "integer", "minimum": 0, "description": "rows skipped: their sku comes again later"},
        "to_embed": {"type": "integer", "minimum": 0, "description": "products created or updated"},
        "embedded": {"type": "integer", "minimum": 0, "description": "of those, searchable under the active model"},
        "errors": {
            "type": "array",
            "description": "the first 200 bad or repeated rows",
            "items": {
                "type": "object",
                "required": ["row", "sku", "error"],
                "properties": {
                    "row": {"type": "integer", "description": "1 = the first data row"},
                    "sku": {"type": "string"},
                    "error": {"type": "string"},
                },
            },
        },
        "error_message": {"type": "string", "description": "why the whole file failed; empty otherwise"},
        "notes": {
            "type": "array",
            "items": {"type": "string"},
            "description": "whole-file warnings (encoding guessed, columns ignored)",
        },
        "summary": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "finished_at": {
            "type": ["string", "null"],
            "format": "date-time",
            "description": "when every row was read (or the file failed)",
        },
    },
}


def errors(*codes: int) -> dict:
    text = {
        400: "bad input, named in `error`",
        404: "not found: img unknown or expired (search), no such import (imports), unknown query_id or sku (click)",
        413: "upload too large",
        401: "no token, a malformed Authorization header, or an unknown or revoked token",
        403: "the token's user is not staff",
        429: "too many requests from this client (SEARCH_RATE_LIMIT, PHOTO_SEARCH_RATE_LIMIT); "
        "`retry_after` and the Retry-After header say in how many seconds to try again",
        503: "no model active yet",
    }
    answers = {
        str(c): {
            "description": text[c],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for c in codes
    }
    if 401 in codes:
        answers["401"]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    if 429 in codes:
        answers["429"]["headers"] = {
            "Retry-After": {
                "description": "seconds until the client may try again",
                "schema": {"type": "integer", "minimum": 1},
            }
        }
    return answers


K_PARAM = {
    "name": "k",
    "in": "query",
    "description": "results per page",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": 24},
}
# An empty value means "not given", as an HTML form sends it: hence "" in the enums.
SEARCH_FIELDS = {
    "mode": {
        "type": "string",
        "enum": [*MODES, ""],
        "description": "hybrid: vector + full text fused by reciprocal rank; default (or empty) SEARCH_DEFAULT_MODE",
    },
    "category": {"type": "string", "description": "exact category name (see /api/categories)"},
    "min_price": {"type": "number", "minimum": 0},
    "max_price": {"type": "number", "minimum": 0, "description": "must not be below min_price"},
    "sort": {
        "type": "string",
        "enum": [*SORTS, ""],
        "default": "relevance",
        "description": "price sorts re-order the top 200 candidates by relevance",
    },
    "page": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1},
    "min_score": {
        "type": "number",
        "minimum": -1,
        "maximum": 1,
        "description": "drop results whose score is below this",
    },
    "facets": {
        "type": "boolean",
        "default": False,
        "description": "add facet counts (categories, price histogram) of the products the query matches",
    },
    "text_weight": {
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "description": "photo + words: how much the words weigh against the photo, from 0 (the photo "
        "alone) to 1 (the words alone); default SEARCH_TEXT_WEIGHT, fitted on the "
        "evaluation suite. Ignored without both a photo (img, or the upload) and words",
    },
    "correct": {
        "type": "boolean",
        "default": True,
        "description": "replace misspelt words by the closest catalogue words (keyword and hybrid mode)",
    },
}
# More like this, less like that: repeatable (like=a&like=b); at most SEARCH_MAX_EXAMPLES (10)
# in all, words to avoid typed in q ("not x", "-x") included.
EXAMPLE_FIELDS = {
    "like": {
        "type": "array",
        "items": {"type": "string", "maxLength": 255},
        "description": "skus of products to find more like (an unknown sku is a 400). With no q or img, "
        "the search is these products' neighbours",
    },
    "unlike": {
        "type": "array",
        "items": {"type": "string", "maxLength": 255},
        "description": "skus of products to see less of: they and what is near them move down",
    },
    "like_img": {
        "type": "array",
        "items": {"type": "string", "maxLength": 22, "pattern": "^[A-Za-z0-9_-]+$"},
        "description": "query.image_id of earlier photo searches to find more like (unknown or expired: 400)",
    },
    "unlike_img": {
        "type": "array",
        "items": {"type": "string", "maxLength": 22, "pattern": "^[A-Za-z0-9_-]+$"},
        "description": "query.image_id of earlier photo searches to see less like",
    },
    "avoid": {
        "type": "array",
        "items": {"type": "string", "maxLength": 100},
        "description": 'words to avoid; q\'s own "not x", "without x", "-x" are added to them',
    },
}
PARAMS = [{"name": name, "in": "query", "schema": schema} for name, schema in SEARCH_FIELDS.items()] + [
    {"name": name, "in": "query", "style": "form", "explode": True, "schema": schema}
    for name, schema in EXAMPLE_FIELDS.items()
]


def schema() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Vitrine search API", "version": "1.3.0"},
        "paths": {
            "/api/search": {
                "get": {
                    "summary": "Search products by words (and/or a stored photo search)",
                    "parameters": [
                        {
                            "name": "q",
                            "in": "query",
                            "required": False,
                            "description": "the words; required unless img or like or like_img is given. "
                            '"boots, not heeled", "boots -heeled": the words after not / without / '
                            "except / no, and -words, are words to avoid",
                            "schema": {"type": "string", "maxLength": 500},
                        },
                        K_PARAM,
                        *PARAMS,
                        {
                            "name": "img",
                            "in": "query",
                            "description": "query.image_id of an earlier POST /api/search/image: page or refine it",
                            "schema": {"type": "string", "maxLength": 22},
                        },
                        {
                            "name": "query_id",
                            "in": "query",
                            "description": "the query_id of this search's first page: a later page then counts as the "
                            "same search in the search log",
                            "schema": {"type": "string"},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "ranked results",
                            "content": {
                                "application/json": {
                                    "schema": response({"oneOf": [{"type": "string"}, {"type": "object"}]})
                                }
                            },
                        },
                        **errors(400, 404, 429, 503),
                    },
                }
            },
            "/api/search/image": {
                "post": {
                    "summary": "Search products by an example photo, optionally with words (a composed query)",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["image"],
                                    "properties": {
                                        "image": {"type": "string", "format": "binary"},
                                        "q": {
                                            "type": "string",
                                            "maxLength": 500,
                                            "description": "words combined with the photo",
                                        },
                                        "k": {"type": "integer", "minimum": 1, "maximum": MAX_K},
                                        **SEARCH_FIELDS,
                                        **EXAMPLE_FIELDS,
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "ranked results; query.image_id pages this search via GET /api/search?img=",
                            "content": {"application/json": {"schema": response({"type": "object"})}},
                        },
                        **errors(400, 413, 429, 503),
                    },
                }
            },
            "/api/suggest": {
                "get": {
                    "summary": "Autocomplete: popular past queries that start with the typed text, then categories and "
                    "product titles whose words start with the typed words",
                    "parameters": [
                        {
                            "name": "q",
                            "in": "query",
                            "required": False,
                            "description": "what has been typed so far; fewer than 2 letters gives no suggestions",
                            "schema": {"type": "string", "maxLength": 100},
                        },
                        {
                            "name": "k",
                            "in": "query",
                            "description": "suggestions at most",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 20, "default": 8},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "popular past queries (at most 3), then categories, then titles",
                            "content": {"application/json": {"schema": SUGGESTIONS}},
                        },
                        **errors(400, 429),
                    },
                }
            },
            "/api/click": {
                "post": {
                    "summary": "Report that a search result was opened (search analytics; the page sends it by beacon)",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/x-www-form-urlencoded": {
                                "schema": {
                                    "type": "object",
                                    "required": ["query_id", "sku", "rank"],
                                    "properties": {
                                        "query_id": {
                                            "type": "string",
                                            "format": "uuid",
                                            "description": "the search's query_id",
                                        },
                                        "sku": {"type": "string", "description": "the opened product"},
                                        "rank": {
                                            "type": "integer",
                                            "minimum": 1,
                                            "maximum": 100000,
                                            "description": "its place in the results, 1 = first (across pages)",
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "204": {"description": "recorded (a repeated click on the same result counts once)"},
                        **errors(400, 404, 429),
                    },
                }
            },
            "/api/imports": {
                "post": {
                    "summary": "Import a catalogue (staff token): the admin's import, answered with the job to poll",
                    "security": [{"token": []}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["file"],
                                    "properties": {
                                        "file": {
                                            "type": "string",
                                            "format": "binary",
                                            "description": "a .csv (columns sku,title,description,category,price,image; "
                                            ".tsv/.txt too), or a .zip of that CSV and the images it names; "
                                            "at most MAX_IMPORT_BYTES",
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": {
                            "description": "queued; poll `url` (also the Location header) until status is "
                            "done or failed",
                            "headers": {"Location": {"schema": {"type": "string"}}},
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Import"}}},
                        },
                        **errors(400, 401, 403, 413),
                    },
                }
            },
            "/api/imports/{id}": {
                "get": {
                    "summary": "An import's status, counts, progress and bad rows (staff token)",
                    "security": [{"token": []}],
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
                    ],
                    "responses": {
                        "200": {
                            "description": "the job",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Import"}}},
                        },
                        **errors(401, 403, 404),
                    },
                }
            },
            "/api/categories": {
                "get": {
                    "summary": "Categories and their product counts, for filters",
                    "responses": {
                        "200": {
                            "description": "categories by name",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "categories": {
                                                "type": "array",
                                                "items": {
                                                    "type": "object",
                                                    "required": ["name", "count"],
                                                    "properties": {
                                                        "name": {"type": "string"},
                                                        "count": {"type": "integer"},
                                                    },
                                                },
                                            }
                                        },
                                    }
                                }
                            },
                        },
                        **errors(429),
                    },
                }
            },
        },
        "components": {
            "schemas": {"Result": RESULT, "Error": ERROR, "Facets": FACETS, "Import": IMPORT},
            "securitySchemes": {
                "token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API token of a staff user, made in the admin (API tokens); shown once",
                }
            },
        },
    }
