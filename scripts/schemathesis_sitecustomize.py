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

# anyio (which schemathesis imports on first use of a transport) parses its own source with
# compile() when it is imported, and the same interpreter bug can stop the run there, deep in
# a test's stack. Importing it here, at the top of the stack, parses it once, before any test.
try:
    import anyio  # noqa: F401
    import schemathesis.transport.asgi  # noqa: F401
except Exception:  # not installed yet: nothing to work around
    pass
