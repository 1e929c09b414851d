"""A plugin whose import is interrupted (SIGTERM, as ``crmkpi.cli`` raises it) inside a descriptor's
``__set_name__``: Python 3.11 reports that as a RuntimeError caused by the interruption."""

from crmkpi.errors import Terminated


class Descriptor:
    def __set_name__(self, owner, name):
        raise Terminated()


class Settings:
    url = Descriptor()
