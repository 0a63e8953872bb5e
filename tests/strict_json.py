"""Reading JSON as strict parsers (jq, JavaScript) do: NaN and Infinity are refused."""
import json


def strict_json(text: str):
    """``text`` parsed as strict JSON; an AssertionError names a NaN or Infinity in it."""
    def refuse(constant: str):
        raise AssertionError(f"{constant} in JSON")
    return json.loads(text, parse_constant=refuse)
