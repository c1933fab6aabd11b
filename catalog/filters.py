"""What a search or listing is restricted to: a category and a price range."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Filters:
    category: str | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None

    def sql(self, alias: str) -> tuple[str, list]:
        """The SQL conditions (each after " AND ") and parameters on the product table `alias`."""
        clauses: list[str] = []
        params: list[str | Decimal] = []
        if self.category:
            clauses.append(f"{alias}.category = %s")
            params.append(self.category)
        if self.min_price is not None:
            clauses.append(f"{alias}.price >= %s")
            params.append(self.min_price)
        if self.max_price is not None:
            clauses.append(f"{alias}.price <= %s")
            params.append(self.max_price)
        return "".join(f" AND {c}" for c in clauses), params


NO_FILTERS = Filters()
