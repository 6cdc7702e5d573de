"""The one error of the search stage: a query that cannot be answered, with the reason."""


class SearchError(ValueError):
    """A query cannot be answered; the message tells the user why (no index yet, empty query)."""
