"""Loaded by the schemathesis virtualenv at start (copied there as sitecustomize.py).

CPython 3.11 before 3.11.9 can raise "SystemError: AST constructor recursion depth mismatch"
from ast.parse (CPython gh-106905). Hypothesis parses source only to describe a lambda in a
message, so a run could stop on this interpreter bug, at random, on any operation. The
description falls back to "lambda" then; nothing that is tested changes.
"""

try:
    from hypothesis.internal import lambda_sources as _lambda_sources

    _describe = _lambda_sources.lambda_description

    def _lambda_description(f):
        try:
            return _describe(f)
        except SystemError:
            return "lambda"

    _lambda_sources.lambda_description = _lambda_description
except Exception:  # hypothesis not installed yet: nothing to work around
    pass
