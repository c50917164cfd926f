"""The base of every JSON request body: validated exactly as its OpenAPI schema says."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Self, TypeVar

import pydantic_core
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    GetJsonSchemaHandler,
    model_serializer,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

from timebank.names import find_bad_character

# email-validator refuses addresses that can never be delivered, which JSON Schema's
# `format: email` cannot say: state it.
Email = Annotated[
    EmailStr,
    Field(
        description="An email address. Addresses at special-use domains (`.arpa`, `.invalid`, "
        "`.local`, `localhost`, `.onion`, `.test`) are refused."
    ),
]


# Free text as people type it: the spaces, tabs and line breaks around it are trimmed after
# its length is checked, so the document's maxLength (on what is sent) and the service agree;
# a required text must hold some other character, which the document says with a pattern.
SPACE = " \t\n\r"


def _characters(value: str, *, name: bool) -> str:
    """One check for every name and free text (``timebank.names.find_bad_character``): control,
    bidirectional-override, zero-width and NUL characters are refused alike on both engines,
    as ``bad_character`` with the field named."""
    found = find_bad_character(value, name=name)
    if found:
        position, code, what = found
        raise PydanticCustomError(
            "bad_character",
            "must not contain a {what} ({character}, character {position})",
            {"what": what, "character": code, "position": position},
        )
    return value


# A free text (a description, a reason): line breaks allowed, invisible characters not.
FreeText = AfterValidator(lambda value: _characters(value, name=False))
# A name: one line, no invisible characters; the spaces and line breaks around it are
# trimmed first, as they are from every text ("  Ann Smith \n" is "Ann Smith").
NameText = AfterValidator(lambda value: _characters(value.strip(SPACE), name=True))
Trimmed = AfterValidator(lambda value: _characters(value, name=False).strip(SPACE))
NOT_BLANK = r"[^ \t\n\r]"


def as_strict_json(value: Any) -> bytes:
    """Decoded JSON back as the JSON that was sent (whole numbers as integers), for
    pydantic's strict JSON validation — the one way a body or a batch item is validated."""
    return pydantic_core.to_json(whole_numbers_as_integers(value))


def whole_numbers_as_integers(value: Any) -> Any:
    """JSON Schema counts ``90.0`` as the integer 90; Python's JSON decoder makes it a float."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: whole_numbers_as_integers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [whole_numbers_as_integers(v) for v in value]
    return value


class JsonBody(BaseModel):
    """A request body. Unknown fields are refused, and values are validated as pydantic
    validates JSON in strict mode, which is what the document (pydantic's JSON Schema of the
    model) promises: ``0`` is not a boolean, ``"90"`` and ``90.5`` are not integers, ``0``
    is not a date. (Litestar hands pydantic decoded Python values, and pydantic's lax
    Python mode would quietly take all of those.)"""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def model_validate(cls, obj: Any, *, strict: bool | None = None, **kwargs: Any) -> Self:
        if isinstance(obj, BaseModel) or kwargs.get("from_attributes"):
            return super().model_validate(obj, strict=strict, **kwargs)
        return cls.model_validate_json(
            as_strict_json(obj),
            strict=True,
            context=kwargs.get("context"),
        )


B = TypeVar("B", bound=BaseModel)


def trusted(model: type[B], **values: Any) -> B:
    """``model.model_construct(**values)`` for data from the ledger that gives every field
    (no aliases, defaults or extras to resolve): the same instance for a fraction of the
    cost — a 1000-item batch builds four per item. ``tests/test_trusted.py`` checks it
    against ``model_construct`` for every model built this way."""
    m = model.__new__(model)
    object.__setattr__(m, "__dict__", values)
    object.__setattr__(m, "__pydantic_fields_set__", set(values))
    object.__setattr__(m, "__pydantic_extra__", None)
    object.__setattr__(m, "__pydantic_private__", None)
    return m


# The models documented as alternatives of a body (:func:`one_of`): the OpenAPI document
# lists them as components of their own.
ALTERNATIVES: list[type[BaseModel]] = []


def one_of(*models: type[BaseModel]) -> Any:
    """A ``__get_pydantic_json_schema__`` that documents a body as ``oneOf`` plain object
    alternatives (which generated clients turn into typed classes), while the model itself
    keeps validating the request with one readable error per mistake."""
    ALTERNATIVES.extend(models)

    def schema(_: type, __: CoreSchema, ___: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {"oneOf": [{"$ref": f"#/components/schemas/{m.__name__}"} for m in models]}

    return classmethod(schema)


class FieldError(BaseModel):
    """One refused field of a request: where it is (``minutes``, ``providers.0.member_id``,
    a query parameter's name, ``body``) and what to do about it."""

    field: str
    message: str


class LeavesOut(BaseModel):
    """A response model whose optional fields (``ABSENT_IF_NONE``) are left out where they do
    not apply, not sent as null: the document marks them optional, not nullable."""

    ABSENT_IF_NONE: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _leave_out_what_does_not_apply(self, handler: Any) -> Any:
        out = handler(self)
        for name in self.ABSENT_IF_NONE:
            if out.get(name, 0) is None:
                del out[name]
        return out
