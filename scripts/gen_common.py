"""Node declarations read from the loaded pack: the single source of the locale files and the help pages.

``gen_locales.py`` and ``gen_node_docs.py`` both start here, and so does ``tests/host/test_locales_docs.py``,
which compares what they would write with what is in the repo. ``load_pack`` boots ComfyUI in-process the
way the host test tier does (``tests/host/harness.py``), so no server is needed.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[1]
WEB_DOCS = REPO_ROOT / "web" / "docs"
LOCALES = REPO_ROOT / "locales"
# Inputs whose choices are the files found on this machine: pages say what they list (en, zh), not the files.
FILE_LISTS = {
    ("IPAdapterModelLoader", "ipadapter_file"): ("the files in models/ipadapter", "models/ipadapter 中的文件"),
    ("IPAdapterLoadEmbeds", "embeds"): ("the embeds files found", "找到的嵌入文件"),
}


@dataclass(frozen=True)
class Input:
    """One declared input: its name, socket or widget type, and the widget options that matter to a reader."""

    name: str
    type: str
    required: bool
    tooltip: str
    choices: tuple[str, ...] | None = None
    default: object = None
    minimum: object = None
    maximum: object = None


@dataclass(frozen=True)
class Output:
    index: int
    type: str
    name: str
    tooltip: str


@dataclass(frozen=True)
class NodeDecl:
    """What ComfyUI's ``/object_info`` tells the frontend about a node, in the order it shows it."""

    node_id: str
    display_name: str
    description: str
    category: str
    inputs: tuple[Input, ...]
    outputs: tuple[Output, ...]
    deprecated: bool

    def input(self, name: str) -> Input:
        return next(i for i in self.inputs if i.name == name)


def _input(node_id: str, name: str, spec: tuple, required: bool) -> Input:
    kind = spec[0]
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    choices = None
    if isinstance(kind, (list, tuple)):
        choices, kind = tuple(str(c) for c in kind), "COMBO"
    if (node_id, name) in FILE_LISTS:
        choices = None  # what this machine holds, not part of the declaration
    return Input(name=name, type=str(kind), required=required, tooltip=str(opts.get("tooltip", "")),
                 choices=choices, default=opts.get("default"), minimum=opts.get("min"), maximum=opts.get("max"))


def declaration(node_id: str, cls: type, display_name: str | None = None) -> NodeDecl:
    """A node class's declaration (V1 ``INPUT_TYPES``/``RETURN_TYPES`` API, as every node of this pack uses)."""
    types = cls.INPUT_TYPES()
    inputs = [_input(node_id, name, spec, section == "required")
              for section in ("required", "optional") for name, spec in types.get(section, {}).items()]
    returns = tuple(getattr(cls, "RETURN_TYPES", ()))
    names = tuple(getattr(cls, "RETURN_NAMES", None) or returns)
    tips = tuple(getattr(cls, "OUTPUT_TOOLTIPS", None) or ())
    outputs = tuple(Output(i, str(t), str(names[i]), str(tips[i]) if i < len(tips) else "")
                    for i, t in enumerate(returns))
    return NodeDecl(node_id=node_id, display_name=display_name or getattr(cls, "DISPLAY_NAME", node_id),
                    description=str(getattr(cls, "DESCRIPTION", "") or ""), category=str(cls.CATEGORY),
                    inputs=tuple(inputs), outputs=outputs, deprecated=bool(getattr(cls, "DEPRECATED", False)))


def declarations(pack: ModuleType) -> dict[str, NodeDecl]:
    """Every registered node of the loaded pack, in registration order."""
    names = getattr(pack, "NODE_DISPLAY_NAME_MAPPINGS", {})
    return {node_id: declaration(node_id, cls, names.get(node_id)) for node_id, cls in pack.NODE_CLASS_MAPPINGS.items()}


def find_comfyui() -> Path:
    """``$COMFYUI_PATH``, else ``~/ComfyUI``: the host whose loader imports the pack."""
    root = Path(os.environ.get("COMFYUI_PATH") or Path.home() / "ComfyUI").expanduser()
    if not (root / "nodes.py").is_file():
        sys.exit(f"No ComfyUI at {root}: set COMFYUI_PATH to a ComfyUI checkout (the generators read the node "
                 "declarations through ComfyUI's own loader).")
    return root.resolve()


def load_pack() -> ModuleType:
    """The pack as ComfyUI's loader imports it (CPU, in-process), via the host tier's harness."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tests.host import harness

    harness.boot(find_comfyui())
    work = tempfile.mkdtemp(prefix="ipas-gen-")  # holds custom_nodes/<link to the repo> for ComfyUI's loader
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    return harness.load_pack(Path(work))


def dump_json(data: dict) -> str:
    """The repo's JSON style for generated files: 2-space indent, real UTF-8 characters, final newline."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def write_files(files: dict[Path, str], check: bool) -> int:
    """Write ``files`` (or, with ``check``, only report the ones that differ). Returns the count of changes."""
    changed = [path for path, text in files.items()
               if not path.is_file() or path.read_text(encoding="utf-8") != text]
    for path in changed:
        rel = path.relative_to(REPO_ROOT)
        if check:
            print(f"out of date: {rel}")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path], encoding="utf-8")
        print(f"wrote {rel}")
    return len(changed)
