"""The OpenAPI 3.1 description of the JSON API, served at /api/openapi.json."""
from __future__ import annotations

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
    },
}
ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}


def response(query_schema: dict) -> dict:
    return {
        "type": "object",
        "required": ["query", "took_ms", "results"],
        "properties": {
            "query": query_schema,
            "took_ms": {"type": "number"},
            "results": {"type": "array", "items": {"$ref": "#/components/schemas/Result"}},
        },
    }


def errors(*codes: int) -> dict:
    text = {400: "bad input, named in `error`", 413: "upload too large", 503: "no model active yet"}
    return {
        str(c): {"description": text[c], "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        for c in codes
    }


K_PARAM = {"name": "k", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 24}}


def schema() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Vitrine search API", "version": "1.0.0"},
        "paths": {
            "/api/search": {
                "get": {
                    "summary": "Search products by a text description",
                    "parameters": [
                        {"name": "q", "in": "query", "required": True, "schema": {"type": "string", "maxLength": 500}},
                        K_PARAM,
                    ],
                    "responses": {
                        "200": {"description": "ranked results", "content": {"application/json": {"schema": response({"type": "string"})}}},
                        **errors(400, 503),
                    },
                }
            },
            "/api/search/image": {
                "post": {
                    "summary": "Search products by an example photo",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["image"],
                                    "properties": {
                                        "image": {"type": "string", "format": "binary"},
                                        "k": {"type": "integer", "minimum": 1, "maximum": 100},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "ranked results",
                            "content": {"application/json": {"schema": response({"type": "object"})}},
                        },
                        **errors(400, 413, 503),
                    },
                }
            },
        },
        "components": {"schemas": {"Result": RESULT, "Error": ERROR}},
    }
