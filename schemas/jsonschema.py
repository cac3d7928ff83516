"""The exported JSON Schemas. Regenerate the committed file with::

    python -m privprep.schemas.jsonschema > schemas/config.schema.json
"""

from __future__ import annotations

import json
from typing import Any

from .config import PipelineConfig

SCHEMA_ID = "https://privprep.dev/schemas/config.schema.json"


def config_schema() -> dict[str, Any]:
    """The JSON Schema of the pipeline config, as committed in ``schemas/config.schema.json``."""
    schema = PipelineConfig.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def dumps(schema: dict[str, Any]) -> str:
    """The canonical text of a schema file."""
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(dumps(config_schema()), end="")
