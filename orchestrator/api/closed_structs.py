"""Request bodies that refuse unknown keys say so in the OpenAPI document.

msgspec Structs declared with `forbid_unknown_fields=True` answer 400 to a body with an extra key,
but Litestar's struct schema leaves `additionalProperties` out, so generated clients (and the
contract fuzzer) would take such a body for valid. This replaces Litestar's struct plugin with one
that adds `additionalProperties: false` to exactly those Structs (its base class is private to
Litestar 2.x; the lock pins the version).
"""

from __future__ import annotations

import msgspec
from litestar._openapi.schema_generation import SchemaCreator
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi.spec import Schema
from litestar.typing import FieldDefinition


class ClosedStructSchemaPlugin(StructSchemaPlugin):
    def to_openapi_schema(
        self, field_definition: FieldDefinition, schema_creator: SchemaCreator
    ) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        info = msgspec.inspect.type_info(field_definition.type_)
        if isinstance(info, msgspec.inspect.StructType) and info.forbid_unknown_fields:
            schema.additional_properties = False
        return schema
