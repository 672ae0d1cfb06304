"""Document limits beyond Strawberry's own (depth, aliases, tokens): directives and duplicated
fields, the two graphql-cop overloads that stay small in tokens."""

from __future__ import annotations

from collections import Counter
from typing import Any

from graphql import FieldNode, GraphQLError, SelectionSetNode, ValidationRule

MAX_DIRECTIVES_PER_FIELD = 4
MAX_DIRECTIVES = 50
MAX_DUPLICATE_FIELDS = 10


class SelectionLimits(ValidationRule):
    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.directives = 0

    def enter_field(self, node: FieldNode, *_: Any) -> None:
        count = len(node.directives or ())
        self.directives += count
        if count > MAX_DIRECTIVES_PER_FIELD or self.directives > MAX_DIRECTIVES:
            self.report_error(GraphQLError("Too many directives.", node))

    def enter_selection_set(self, node: SelectionSetNode, *_: Any) -> None:
        keys = Counter(
            (selection.alias or selection.name).value
            for selection in node.selections
            if isinstance(selection, FieldNode)
        )
        if keys and max(keys.values()) > MAX_DUPLICATE_FIELDS:
            self.report_error(GraphQLError("A field is repeated too many times.", node))
