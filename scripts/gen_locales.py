"""Write the pack's locale files in ComfyUI's custom-node i18n layout (``locales/<lang>/nodeDefs.json``, ``main.json``).

* ``locales/en`` comes from the node declarations only (display names, descriptions, input names and tooltips,
  output names and tooltips, category segments), so the English files can never drift from the nodes.
* ``locales/zh`` is assembled from the same structure and the hand translation in ``locales/zh/strings.json``:
  labels by input/output name (with per-node overrides), and every English sentence mapped to its Chinese one.
  A sentence changed in a node has no translation until a translator adds one: the script lists it and fails.

Usage (ComfyUI at $COMFYUI_PATH or ~/ComfyUI)::

    ~/.cache/ipadapter-suite/venv/bin/python scripts/gen_locales.py           # write
    ~/.cache/ipadapter-suite/venv/bin/python scripts/gen_locales.py --check   # exit 1 if a file is out of date

See docs/i18n.md for the glossary and how to add a language.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.gen_common import LOCALES, NodeDecl, declarations, dump_json, load_pack, write_files  # noqa: E402

ZH_STRINGS = LOCALES / "zh" / "strings.json"


def english_node(decl: NodeDecl) -> dict:
    """One node's ``nodeDefs`` entry, in the shape the frontend reads (``nodeDefs.<id>.inputs.<name>.name`` ...)."""
    inputs = {}
    for item in decl.inputs:
        inputs[item.name] = {"name": item.name, **({"tooltip": item.tooltip} if item.tooltip else {})}
    outputs = {str(out.index): {"name": out.name, **({"tooltip": out.tooltip} if out.tooltip else {})}
               for out in decl.outputs}
    entry: dict = {"display_name": decl.display_name}
    if decl.description:
        entry["description"] = decl.description
    entry["inputs"] = inputs
    entry["outputs"] = outputs
    return entry


def english(decls: dict[str, NodeDecl]) -> dict[str, dict]:
    """``{"nodeDefs.json": ..., "main.json": ...}`` for English: the declarations, word for word."""
    segments = sorted({seg for decl in decls.values() for seg in decl.category.split("/")})
    return {"nodeDefs.json": {node_id: english_node(decl) for node_id, decl in decls.items()},
            "main.json": {"nodeCategories": {seg: seg for seg in segments}}}


class Translator:
    """Looks up the hand translation; records what is missing and which entries were used."""

    def __init__(self, strings: dict) -> None:
        self.strings = strings
        self.missing: list[str] = []
        self.used: set[tuple[str, ...]] = set()

    def _get(self, path: tuple[str, ...], what: str) -> str:
        node = self.strings
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
            if node is None:
                self.missing.append(what)
                return ""
        self.used.add(path)
        return node

    def text(self, english_text: str, where: str) -> str:
        return self._get(("text", english_text), f"text for {where}: {english_text!r}")

    def label(self, kind: str, node_id: str, name: str) -> str:
        """An input/output label: the node's own override, else the pack-wide one."""
        override = self.strings.get(f"{kind}_by_node", {}).get(node_id, {})
        if name in override:
            self.used.add((f"{kind}_by_node", node_id, name))
            return override[name]
        return self._get((kind, name), f"{kind} label '{name}' (node {node_id})")

    def unused(self) -> list[str]:
        """Entries of strings.json that no declaration asks for (stale after a node changed)."""
        stale = []
        for section, values in self.strings.items():
            if not isinstance(values, dict):
                continue
            for key, value in values.items():
                if isinstance(value, dict) and section.endswith("_by_node"):
                    stale += [f"{section}.{key}.{k}" for k in value if (section, key, k) not in self.used]
                elif (section, key) not in self.used:
                    stale.append(f"{section}: {key!r}")
        return stale


def chinese(decls: dict[str, NodeDecl], strings: dict) -> tuple[dict[str, dict], Translator]:
    """The zh files, and the translator (its ``missing`` and ``unused()`` say what the translation lacks)."""
    tr = Translator(strings)
    defs = {}
    for node_id, decl in decls.items():
        entry: dict = {"display_name": tr._get(("display_names", node_id), f"display name of {node_id}")}
        if decl.description:
            entry["description"] = tr.text(decl.description, f"{node_id} description")
        entry["inputs"] = {}
        for item in decl.inputs:
            value = {"name": tr.label("input_names", node_id, item.name)}
            if item.tooltip:
                value["tooltip"] = tr.text(item.tooltip, f"{node_id}.{item.name} tooltip")
            entry["inputs"][item.name] = value
        entry["outputs"] = {}
        for out in decl.outputs:
            value = {"name": tr.label("output_names", node_id, out.name)}
            if out.tooltip:
                value["tooltip"] = tr.text(out.tooltip, f"{node_id} output {out.index} tooltip")
            entry["outputs"][str(out.index)] = value
        defs[node_id] = entry
    segments = sorted({seg for decl in decls.values() for seg in decl.category.split("/")})
    categories = {seg: tr._get(("categories", seg), f"category '{seg}'") for seg in segments}
    return {"nodeDefs.json": defs, "main.json": {"nodeCategories": categories}}, tr


def load_strings() -> dict:
    return json.loads(ZH_STRINGS.read_text(encoding="utf-8"))


def locale_files(decls: dict[str, NodeDecl]) -> tuple[dict[Path, str], Translator]:
    """Every locale file's expected text, and the zh translator's findings."""
    zh, tr = chinese(decls, load_strings())
    files = {LOCALES / "en" / name: dump_json(data) for name, data in english(decls).items()}
    files.update({LOCALES / "zh" / name: dump_json(data) for name, data in zh.items()})
    return files, tr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report files that are out of date (exit 1)")
    args = parser.parse_args(argv)
    files, tr = locale_files(declarations(load_pack()))
    if tr.missing:
        print("The Chinese translation (locales/zh/strings.json) lacks:\n  " + "\n  ".join(tr.missing))
        print("Add these entries, then run this script again.")
        return 1
    for stale in tr.unused():
        print(f"note: unused entry in locales/zh/strings.json: {stale}")
    changed = write_files(files, args.check)
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
