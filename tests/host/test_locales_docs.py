"""Locale files and help pages against the node declarations of the loaded pack (issue 14, parts 3 and 4).

* Every registered node (v1 nodes and the Doctor included) has an entry in ``locales/en`` and ``locales/zh``
  with its display name, description, every input (name, tooltip) and every output, and its category segments.
* ``locales/en`` is exactly what ``scripts/gen_locales.py`` makes from the declarations, and ``locales/zh`` what
  it makes from the hand translation, which lacks nothing and holds nothing stale.
* Every node has ``web/docs/<id>.md`` and ``web/docs/<id>/zh.md`` (the paths ComfyUI's node-docs panel fetches),
  each naming every input and output; generated pages equal the generator's output, and the error messages
  they quote still occur in the pack's source.
* ComfyUI's own ``/i18n`` builder (``CustomNodeManager.build_translations``) reads our files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from scripts import gen_docs_data, gen_locales, gen_node_docs
from scripts.gen_common import LOCALES, REPO_ROOT, WEB_DOCS, declarations
from tests.host import harness

CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def decls(pack):
    return declarations(pack)


@pytest.fixture(scope="module")
def zh_build(decls):
    return gen_locales.chinese(decls, gen_locales.load_strings())


def _on_disk(lang: str, name: str) -> dict:
    return json.loads((LOCALES / lang / name).read_text(encoding="utf-8"))


def test_the_declarations_cover_every_registered_node(pack, decls):
    assert list(decls) == list(pack.NODE_CLASS_MAPPINGS)
    assert {"IPAdapterApply", "InsightFaceLoader", "IPAdapterEncoderV1", "IPAdapterDoctor"} <= set(decls)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_node_input_and_output_has_an_entry(decls, lang):
    defs, main = _on_disk(lang, "nodeDefs.json"), _on_disk(lang, "main.json")
    problems = []
    for node_id, decl in decls.items():
        entry = defs.get(node_id)
        if entry is None:
            problems.append(f"{node_id}: no entry")
            continue
        if not entry.get("display_name"):
            problems.append(f"{node_id}: no display_name")
        if decl.description and not entry.get("description"):
            problems.append(f"{node_id}: no description")
        for item in decl.inputs:
            value = entry.get("inputs", {}).get(item.name, {})
            if not value.get("name"):
                problems.append(f"{node_id}: input '{item.name}' has no name")
            if item.tooltip and not value.get("tooltip"):
                problems.append(f"{node_id}: input '{item.name}' has no tooltip")
        for out in decl.outputs:
            value = entry.get("outputs", {}).get(str(out.index), {})
            if not value.get("name"):
                problems.append(f"{node_id}: output {out.index} ('{out.name}') has no name")
            if out.tooltip and not value.get("tooltip"):
                problems.append(f"{node_id}: output {out.index} ('{out.name}') has no tooltip")
        for segment in decl.category.split("/"):
            if not main.get("nodeCategories", {}).get(segment):
                problems.append(f"{node_id}: category segment '{segment}' missing from main.json")
    stale = sorted(set(defs) - set(decls))
    assert not problems and not stale, f"locales/{lang}: " + "\n".join(problems + [f"{s}: not a node" for s in stale])


def test_english_locale_is_generated_from_the_declarations(decls):
    expected = gen_locales.english(decls)
    for name, data in expected.items():
        assert _on_disk("en", name) == data, (
            f"locales/en/{name} is out of step with the node declarations: run "
            "`~/.cache/ipadapter-suite/venv/bin/python scripts/gen_locales.py`")


def test_english_labels_are_the_declared_names(decls):
    """The English file changes nothing in the UI: every label is the declared input/output name."""
    defs = _on_disk("en", "nodeDefs.json")
    for node_id, decl in decls.items():
        assert defs[node_id]["display_name"] == decl.display_name
        assert {k: v["name"] for k, v in defs[node_id]["inputs"].items()} == {i.name: i.name for i in decl.inputs}


def test_chinese_translation_is_complete_and_has_nothing_stale(zh_build):
    _files, translator = zh_build
    assert not translator.missing, "locales/zh/strings.json lacks:\n" + "\n".join(translator.missing)
    assert not translator.unused(), "locales/zh/strings.json has stale entries:\n" + "\n".join(translator.unused())


def test_chinese_locale_files_are_in_step(zh_build):
    files, _ = zh_build
    for name, data in files.items():
        assert _on_disk("zh", name) == data, f"locales/zh/{name} is out of date: run scripts/gen_locales.py"


def test_chinese_texts_are_translated_not_copied(decls):
    defs = _on_disk("zh", "nodeDefs.json")
    untranslated = []
    for node_id, entry in defs.items():
        texts = [("display_name", entry["display_name"]), ("description", entry.get("description", ""))]
        texts += [(f"input {k} tooltip", v.get("tooltip", "")) for k, v in entry["inputs"].items()]
        texts += [(f"output {k} tooltip", v.get("tooltip", "")) for k, v in entry["outputs"].items()]
        untranslated += [f"{node_id} {what}: {text!r}" for what, text in texts if text and not CJK.search(text)]
    assert not untranslated, "\n".join(untranslated)


def test_comfyui_serves_our_locales_through_its_i18n_builder(pack, host_dirs, monkeypatch):
    """ComfyUI's ``/i18n`` route merges ``locales/<lang>/{main,nodeDefs}.json`` of every custom node folder."""
    from app.custom_node_manager import CustomNodeManager

    fp = harness.folder_paths()
    monkeypatch.setitem(fp.folder_names_and_paths, "custom_nodes", ([str(host_dirs["work"] / "custom_nodes")], set()))
    translations = CustomNodeManager().build_translations()
    ours = _on_disk("zh", "nodeDefs.json")["IPAdapterAdvanced"]
    served = translations["zh"]["nodeDefs"]["IPAdapterAdvanced"]
    assert served["display_name"] == ours["display_name"]
    assert served["inputs"]["weight"]["name"] == ours["inputs"]["weight"]["name"]
    assert translations["en"]["nodeDefs"]["IPAdapterAdvanced"]["display_name"] == "IPAdapter Advanced"
    categories = _on_disk("zh", "main.json")["nodeCategories"]
    assert translations["zh"]["nodeCategories"]["ipadapter"] == categories["ipadapter"]


def test_help_pages_live_where_the_frontend_looks(pack):
    """The frontend fetches /extensions/<pack>/docs/<id>/<locale>.md, then <id>.md; /extensions/<pack>/ is
    WEB_DIRECTORY."""
    assert (REPO_ROOT / pack.WEB_DIRECTORY).resolve() / "docs" == WEB_DOCS.resolve()
    pages = {p.relative_to(WEB_DOCS).as_posix() for p in WEB_DOCS.rglob("*.md")}
    expected = {f"{i}.md" for i in pack.NODE_CLASS_MAPPINGS} | {f"{i}/zh.md" for i in pack.NODE_CLASS_MAPPINGS}
    assert sorted(expected - pages) == [], "nodes without a help page"
    assert sorted(pages - expected) == [], "help pages of no registered node"


def _page_problems(decl, zh_entry: dict, lang: str, text: str) -> list[str]:
    title = decl.display_name if lang == "en" else zh_entry["display_name"]
    problems = [] if text.startswith(("# " + title + "\n", gen_node_docs.MARKER + "\n\n# " + title + "\n")) \
        else [f"does not start with the title '# {title}'"]
    problems += [f"input `{i.name}` not on the page" for i in decl.inputs if f"`{i.name}`" not in text]
    problems += [f"output `{o.name}` not on the page" for o in decl.outputs if f"`{o.name}`" not in text]
    if lang == "zh":
        problems += [f"input `{name}`'s Chinese label '{value['name']}' not on the page"
                     for name, value in zh_entry["inputs"].items() if value["name"] not in text]
    return problems


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_page_names_every_input_and_output(decls, lang):
    zh = _on_disk("zh", "nodeDefs.json")
    problems = []
    for node_id, decl in decls.items():
        path = gen_node_docs.page_paths(node_id)[lang]
        text = path.read_text(encoding="utf-8")
        problems += [f"{path.relative_to(REPO_ROOT)}: {p}" for p in _page_problems(decl, zh[node_id], lang, text)]
        generated = text.startswith(gen_node_docs.MARKER)
        if generated == (node_id in gen_node_docs.HAND_WRITTEN):
            problems.append(f"{path.relative_to(REPO_ROOT)}: hand-written nodes' pages carry no generator marker, "
                            "the others do")
        if lang == "zh" and not CJK.search(text.split("## ")[0]):
            problems.append(f"{path.relative_to(REPO_ROOT)}: the introduction is not in Chinese")
    assert not problems, "\n".join(problems)


def test_generated_pages_are_in_step(decls, zh_build):
    files, _ = zh_build
    stale = [str(path.relative_to(REPO_ROOT)) for path, text in
             gen_node_docs.generated_pages(decls, files["nodeDefs.json"]).items()
             if not path.is_file() or path.read_text(encoding="utf-8") != text]
    assert not stale, "out of date (run scripts/gen_node_docs.py):\n" + "\n".join(stale)


def _source_text() -> str:
    """The pack's Python source with adjacent string literals joined, as the messages read at run time."""
    paths = sorted((REPO_ROOT / "nodes").glob("*.py")) + sorted((REPO_ROOT / "ipadapter_core").rglob("*.py"))
    text = "\n".join(p.read_text(encoding="utf-8") for p in paths)
    return re.sub(r"[\"']\s*\n\s*(?:rf|fr|f|r)?[\"']", "", text)


def test_quoted_error_messages_occur_in_the_source():
    source = _source_text()
    missing = [(m.message, part) for m in gen_docs_data.MISTAKES for part in m.message.split("…")
               if part.strip() and part.strip() not in source]
    assert not missing, "messages quoted by the help pages that the pack no longer raises:\n" + "\n".join(
        f"{msg!r}: {part!r}" for msg, part in missing)


def test_every_generated_node_says_when_to_pick_it(decls):
    generated = [node_id for node_id in decls if node_id not in gen_node_docs.HAND_WRITTEN]
    assert sorted(set(generated) - set(gen_docs_data.ABOUT)) == []
    assert sorted(set(gen_docs_data.ABOUT) - set(generated)) == []


def test_the_glossary_terms_are_used(zh_build):
    """docs/i18n.md's glossary is the vocabulary of the translation: each term appears in the zh locale."""
    glossary = (REPO_ROOT / "docs" / "i18n.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| ([^|`]+?) \| ([^|]+?) \|", glossary, flags=re.M)
    terms = [t.strip() for en, zh in rows if en != "English" for t in zh.split(" / ") if CJK.search(t)]
    assert len(terms) >= 20, "the glossary table of docs/i18n.md was not found"
    files, _ = zh_build
    text = json.dumps(files, ensure_ascii=False) + "".join(
        Path(p).read_text(encoding="utf-8") for p in WEB_DOCS.rglob("zh.md"))
    assert [t for t in terms if t not in text] == []
