"""A plugin module that implements no hook at all (an entry point naming the wrong module, say)."""

ANSWER = 42
