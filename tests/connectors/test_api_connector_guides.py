"""The YAML examples of the Salesforce and HubSpot guides are valid configs: a guide fails this when it drifts.

A guide's first example is a whole config; later ones are fragments of its connector block (an
``objects:`` section, say), checked merged into that block. Secrets are read from the
environment, as the guides write them.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import yaml

from crmkpi.config import load_config
from crmkpi.plugins import load_registry

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^( *)```yaml\n(.*?)^ *```", re.M | re.S)


def examples(guide: Path) -> list[str]:
    return [textwrap.dedent(body) for _, body in BLOCK.findall(guide.read_text(encoding="utf-8"))]


@pytest.mark.parametrize("connector", ["salesforce", "hubspot"])
def test_every_yaml_example_of_the_guide_validates(connector: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch):
    whole, *fragments = examples(ROOT / "connectors" / connector / "README.md")
    for variable in re.findall(r"\$\{(\w+)", "".join([whole, *fragments])):
        monkeypatch.setenv(variable, "placeholder")
    config = yaml.safe_load(whole)
    (name, block), = config["connectors"].items()
    assert block["type"] == connector
    registry = load_registry(distribution="crmkpi")
    for example in [None, *fragments]:
        merged = {**block, **(yaml.safe_load(example) if example else {})}
        path = tmp_path / "crmkpi.yaml"
        path.write_text(yaml.safe_dump({"connectors": {name: merged}}), encoding="utf-8")
        assert load_config(path, registry).connectors[name].type == connector
    assert fragments, "each guide shows at least one mapping fragment"
