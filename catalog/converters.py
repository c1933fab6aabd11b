"""URL converters. A sku is any printable text, '/' included, so it travels in the path.

`reverse` percent-escapes what needs it (space, '#', '?', '%', quotes, unicode), and the
server decodes it again before routing. Only path segments made of dots cannot survive:
browsers and proxies collapse "." and ".." (even as %2E) before the request reaches us. Such
a segment is sent with a "~" in front, and "~" already in front of dots gets one more, so
every sku still has exactly one URL and every URL names one sku.
"""

from __future__ import annotations

import re

_DOTS = re.compile(r"~*\.+")  # a segment that needs (or already has) the "~" escape
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class SkuConverter:
    regex = ".+"

    def to_python(self, value: str) -> str:
        if _CONTROL.search(value):  # never a stored sku; a 404, not a database error
            raise ValueError("control character in a sku")
        return "/".join(
            part[1:] if part.startswith("~") and _DOTS.fullmatch(part) else part for part in value.split("/")
        )

    def to_url(self, value: str) -> str:
        return "/".join("~" + part if _DOTS.fullmatch(part) else part for part in value.split("/"))
