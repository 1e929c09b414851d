"""A plugin whose hook implementation asks for an argument the hook spec does not have."""

from crmkpi import hookimpl


@hookimpl
def register_metrics(register, registry):
    raise AssertionError("never called")
