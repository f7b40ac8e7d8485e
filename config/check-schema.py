#!/usr/bin/env python3
"""Validate tokengate config files against config/tokengate.schema.json (JSON Schema 2020-12).

    python3 config/check-schema.py [--schema config/tokengate.schema.json] FILE...

A FILE ending in .json is read as JSON; any other is read as YAML (needs PyYAML). ${NAME}
placeholders are not substituted: inside a string they pass, where a number is expected they
do not. For each file it prints "FILE: valid" or "FILE: invalid" followed by one indented line
per problem ("  at PATH: MESSAGE"). Exit status: 0 all valid, 1 some invalid, 2 usage or an
unreadable file, 3 a Python module is missing.

It checks shapes only (keys, types, enum spellings, durations); `tokengate check-config` checks
everything. tests/config_schema.rs runs it over every example config.
"""

import argparse
import json
import os
import sys

# The version CI installs (.ci/run); others of the 4.x line work too.
JSONSCHEMA = "jsonschema==4.26.0"


def missing(module, install):
    print(f"check-schema: the Python module {module} is missing; install it with "
          f"`python3 -m pip install {install}`", file=sys.stderr)
    sys.exit(3)


def load(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".json"):
        return json.loads(text)
    try:
        import yaml
    except ImportError:
        missing("yaml", "PyYAML")
    return yaml.safe_load(text)


def leaves(error):
    """The errors worth showing: an optional key's schema is "anyOf: [the real one, null]", so
    report why the real one failed rather than "is not valid under any of the given schemas"."""
    branches = [c for c in error.context or []
                if not (c.validator == "type" and c.validator_value == "null")]
    if not branches:
        yield error
        return
    for branch in branches:
        yield from leaves(branch)


def where(error):
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return path.lstrip(".") or "(top level)"


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", default=os.path.join(here, "tokengate.schema.json"))
    parser.add_argument("files", nargs="+", metavar="FILE")
    args = parser.parse_args()
    try:
        from jsonschema import Draft202012Validator
    except ImportError:
        missing("jsonschema", JSONSCHEMA)

    with open(args.schema, encoding="utf-8") as f:
        schema = json.load(f)
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)

    invalid = False
    for path in args.files:
        try:
            document = load(path)
        except Exception as e:  # unreadable, or not JSON or YAML
            print(f"check-schema: {path}: {e}", file=sys.stderr)
            sys.exit(2)
        # An empty file is an empty config.
        errors = [leaf for e in validator.iter_errors({} if document is None else document)
                  for leaf in leaves(e)]
        errors.sort(key=lambda e: list(map(str, e.absolute_path)))
        if errors:
            invalid = True
            print(f"{path}: invalid")
            for e in errors:
                message = e.message
                if e.validator == "pattern" and "description" in e.schema:
                    # The pattern itself says little (a duration's is 300 characters long).
                    message = f"{e.instance!r} is not valid here: {e.schema['description']}"
                print(f"  at {where(e)}: {message}")
        else:
            print(f"{path}: valid")
    sys.exit(1 if invalid else 0)


if __name__ == "__main__":
    main()
