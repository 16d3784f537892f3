"""Building blocks every capability's schemas share."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Self

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainSerializer,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from backoffice.storable import NUL_MESSAGE, nul_path
from backoffice.visible_text import (
    BIDI_CONTROLS,
    BIDI_MESSAGE,
    INVISIBLE,
    INVISIBLE_MESSAGE,
    WHITE_SPACE,
    Ranges,
    char_class,
    has_bidi_control,
    has_visible,
)


@dataclass(frozen=True)
class _Text:
    """Text a person typed and others read (`backoffice.visible_text`): no control
    characters (Unicode category Cc) but `allowed`, no bidirectional embedding, override or
    isolate controls, and, unless empty, at least one visible character. Applied after
    `trimmed`, so it sees the text as stored.

    The JSON schema's `pattern` states the same rules, so the document tells which strings
    are accepted; all but one: that a combining mark alone shows nothing (a visible
    character is one outside the invisible ranges *and* not a mark), which would take a
    class of some 300 ranges, so `description` says it instead.
    """

    controls: Ranges
    description: str

    def check(self, value: str) -> str:
        # Control characters are never meant in text a person typed; U+0000 cannot even be
        # stored by PostgreSQL. Refuse them here rather than fail or mangle them later.
        if any(unicodedata.category(char) == "Cc" and not self._allowed(char) for char in value):
            raise ValueError("must not contain control characters")
        if has_bidi_control(value):
            raise ValueError(BIDI_MESSAGE)
        if value and not has_visible(value):
            raise ValueError(INVISIBLE_MESSAGE)
        return value

    def _allowed(self, char: str) -> bool:
        return not any(low <= ord(char) <= high for low, high in self.controls)

    def pattern(self, min_length: int) -> str:
        """The rules as a regex: a character outside the invisible ranges somewhere (or,
        where the field may be empty, only white space, which trimming empties), and no
        refused control anywhere."""
        forbidden = char_class(self.controls + BIDI_CONTROLS)
        visible = f"[\\s\\S]*[^{char_class(INVISIBLE)}]"
        if min_length < 1:
            visible = f"[{char_class(WHITE_SPACE)}]*$|{visible}"
        return f"^(?={visible})[^{forbidden}]*$"

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json = handler(schema)
        pattern = self.pattern(json.get("minLength", 0))
        return {"description": self.description, **json, "pattern": pattern}


#: What every text field requires, as its description in the document says.
TEXT_RULES = (
    "at least one visible character (not only white space, invisible characters or "
    "combining marks); no bidirectional embedding, override or isolate controls "
    "(U+202A-U+202E, U+2066-U+2069)"
)
#: A name or title: no control characters at all (Cc is U+0000-U+001F and U+007F-U+009F).
single_line = _Text(((0x00, 0x1F), (0x7F, 0x9F)), f"One line of text: {TEXT_RULES}.")
#: Free text: line breaks and tabs allowed, other control characters not.
multi_line = _Text(
    ((0x00, 0x08), (0x0B, 0x0C), (0x0E, 0x1F), (0x7F, 0x9F)),
    f"Text; line breaks and tabs allowed, other control characters not: {TEXT_RULES}.",
)


def trimmed(min_length: int, max_length: int) -> StringConstraints:
    """Bounds checked after surrounding white space is removed (so "   " is empty)."""
    return StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length)


def _integral(value: object) -> object:
    """JSON has one number type, and JSON Schema counts 1.0 as the integer 1: take it as 1.

    Nothing else is coerced: 1.5, "1" and true stay errors (StrictInt after this).
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: Last in `Annotated[StrictInt, Field(...), integral]`: an integer as JSON Schema defines
#: one, 3 or 3.0, never 3.5, "3" or true (placed last, the bounds stay in the JSON schema).
integral = BeforeValidator(_integral)


#: ISO 8601 with an explicit `+00:00` (pydantic would write `Z`).
Timestamp = Annotated[datetime, PlainSerializer(lambda value: value.isoformat(), return_type=str)]


#: What `InputModel` says of a string with no pattern of its own.
WITHOUT_NUL = r"^[^\x00]*$"


def _state_without_nul(schema: dict[str, Any]) -> None:
    """Say in the JSON schema what `InputModel._storable` checks: a string without a
    pattern of its own (which already excludes U+0000) gets `WITHOUT_NUL`."""
    pending = list(schema.get("properties", {}).values())
    while pending:
        node = pending.pop()
        if node.get("type") == "string" and "pattern" not in node and "enum" not in node:
            node["pattern"] = WITHOUT_NUL
        pending.extend(node.get("anyOf", []))
        if isinstance(node.get("items"), dict):
            pending.append(node["items"])


def example_body(example: dict[str, Any]) -> ConfigDict:
    """An `InputModel`'s config with an example of the whole body, for a model whose fields
    are not all meant to be sent (the token's OAuth2 form fields): Swagger UI's "Try it
    out" starts from it, not from an example per field."""

    def with_example(schema: dict[str, Any]) -> None:
        _state_without_nul(schema)
        schema["examples"] = [example]

    return ConfigDict(extra="forbid", json_schema_extra=with_example)


class InputModel(BaseModel):
    """A request body or query: unknown fields are an error, not silently dropped, and no
    text in it holds U+0000, which PostgreSQL cannot store (`backoffice.storable`)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_state_without_nul)

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        if nul_path(value) is not None:
            raise PydanticCustomError("nul_character", NUL_MESSAGE)
        return value


def _document_patch(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """What the JSON schema of a PATCH body cannot infer: at least one field, and a
    `not_nullable` field is its type alone, not `anyOf [..., null]` (the `| None` in its
    annotation only makes it optional)."""
    schema["minProperties"] = 1
    not_nullable: frozenset[str] = getattr(model, "not_nullable", frozenset())
    for name, field in schema.get("properties", {}).items():
        variants = field.get("anyOf", [])
        if name in not_nullable and {"type": "null"} in variants:
            rest = [variant for variant in variants if variant != {"type": "null"}]
            del field["anyOf"]
            field.pop("default", None)
            field.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
    companions: dict[str, list[str]] = getattr(model, "sent_only_with", {})
    if companions:
        schema["dependentSchemas"] = {
            field: {"anyOf": [{"required": [other]} for other in others]}
            for field, others in companions.items()
        }
    _state_without_nul(schema)


class PatchModel(InputModel):
    """A PATCH body: only the fields sent change, and at least one must be sent.

    Fields listed in `not_nullable` may be left out but not sent as null (a name, a
    quantity); the others may be cleared with null. The body must hold at least one field.
    `sent_only_with` documents a field that comes only with one of some others (the
    service refuses it alone, naming it), as JSON Schema's `dependentSchemas`.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra=_document_patch)

    not_nullable: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name in cls.not_nullable:
            raise PydanticCustomError("not_nullable", "may not be null")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if not self.model_fields_set:
            raise PydanticCustomError("empty_patch", "send at least one field to change")
        return self

    def changes(self) -> dict[str, Any]:
        return self.model_dump(include=self.model_fields_set)


class OutputModel(BaseModel):
    """A response shape, read straight from ORM objects."""

    model_config = ConfigDict(from_attributes=True)


#: What `VersionedOutput` leaves in its models' JSON schemas: the OpenAPI document reads it
#: (an `ETag` header wherever one of them is answered) and removes it (`openapi._versioned`).
VERSIONED_MARK = "x-versioned"


class VersionedOutput(OutputModel):
    """A resource served with the `ETag` of the version it shows (`conventions.etag_for`),
    which `If-None-Match` (304) and `If-Match` (412) compare. Declaring it here is what makes
    the document show the `ETag` header wherever the model is answered; a view that answers
    an ETag with a model not declared so is caught by `tests/test_openapi_document.py`."""

    model_config = ConfigDict(json_schema_extra={VERSIONED_MARK: True})


def _deliverable_pattern() -> str:
    """email-validator refuses addresses at special-use domains (`a@b.test`, `a@localhost`)
    whatever else holds; this pattern says the same in the document (case-insensitively,
    which JSON Schema's regex flavour can only spell with character classes)."""
    names = "|".join(
        "".join(f"[{char.lower()}{char.upper()}]" for char in name)
        for name in SPECIAL_USE_DOMAIN_NAMES
    )
    return rf"^(?![\s\S]*[@.](?:{names})\.?$)"


Email = Annotated[
    EmailStr,
    Field(
        max_length=320,
        examples=["ada@lovelace.dev"],
        json_schema_extra={"pattern": _deliverable_pattern()},
    ),
]
