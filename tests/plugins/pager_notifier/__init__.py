"""A third-party notifier plugin (plugin API 1.1): a pager that appends each message to a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from pydantic import BaseModel

from crmkpi import Message, NotifierError, NotifierType, hookimpl

CRMKPI_PLUGIN_API = ">=1.1,<2"


class PagerSettings(BaseModel):
    path: str


def page(message: Message, settings: PagerSettings) -> None:
    if not Path(settings.path).parent.is_dir():
        raise NotifierError(f"no folder for {settings.path}", retry=False)
    with open(settings.path, "a", encoding="utf-8") as out:
        out.write(json.dumps({"id": message.id, "title": message.title}) + "\n")


@hookimpl
def register_notifiers(register: Callable[[NotifierType], None]) -> None:
    register(NotifierType("pager", "Appends each message to a file", PagerSettings, page))
