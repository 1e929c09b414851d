"""A plugin whose hook function lacks @hookimpl: pluggy never calls it."""


def register_metrics(register):
    raise AssertionError("never called: not marked @hookimpl")
