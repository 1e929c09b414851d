"""A plugin that cannot even be imported."""

raise RuntimeError("plugin import exploded")
