// IPAdapter Suite frontend extension: shows the notes a node of this pack sends with its result
// ({"ui": {"text": [...]}}: FaceID warnings such as "runs without its LoRA", the provider InsightFace
// really uses, the Doctor's report) in a read-only text box under the node. The stock frontend has no
// place for them, so without this they only reach the server console.
//
// Some notes only exist while another node runs: a mask stretched to the latent is found while sampling.
// The server sends those as an "ipadapter_suite.notes" message ({node, key, text}); they are shown after
// the node's own notes, and a message with an empty text clears what that key showed before.
//
// The box is never saved: it is the node's last widget and is marked not to serialize, so a workflow's
// widgets_values (and widgets_values_named) and the prompt sent to the server stay exactly those of the
// node's inputs.
//
// Works in the classic canvas and in the Vue "Nodes 2.0" mode of newer frontends, which draw the box from
// the widget's value store rather than from its DOM element: the value is set through the widget's setter
// (which writes that store) and on the element as well (older frontends read only the element, whose name
// went from `inputEl` to `element` and back), and `read_only` is set in the options both renderers read.
//
// `app`, `api` and `ComfyWidgets` come from window.comfyAPI (every frontend since the TypeScript port); the legacy
// modules are imported, dynamically, only where that is missing: a static import of a module a frontend
// dropped would stop this whole file from loading.
const app = window.comfyAPI?.app?.app ?? (await import("../../scripts/app.js")).app;
const ComfyWidgets = window.comfyAPI?.widgets?.ComfyWidgets ?? (await legacyWidgets());
const api = window.comfyAPI?.api?.api ?? app.api ?? (await import("../../scripts/api.js")).api;

export const NOTES_WIDGET = "ipadapter_notes";
export const NOTES_EVENT = "ipadapter_suite.notes";

async function legacyWidgets() {
  try {
    return (await import("../../scripts/widgets.js")).ComfyWidgets;
  } catch (error) {
    console.error("[IPAdapter Suite] node notes are off: this frontend has neither window.comfyAPI.widgets nor "
      + "scripts/widgets.js, so notes only reach the server console. Update ComfyUI's frontend.", error);
    return null;
  }
}

export function isOurNode(nodeData) {
  return typeof nodeData?.category === "string" && nodeData.category.startsWith("ipadapter");
}

function notesElement(widget) {
  return widget.element ?? widget.inputEl ?? null;
}

function addNotesWidget(node) {
  const widget = ComfyWidgets.STRING(node, NOTES_WIDGET, ["STRING", { multiline: true }], app).widget;
  widget.serialize = false; // not in the workflow's widgets_values
  // not in the prompt; read-only in both renderers (Nodes 2.0 reads `read_only` from the options)
  widget.options = { ...(widget.options ?? {}), serialize: false, read_only: true };
  const element = notesElement(widget);
  if (element) {
    element.readOnly = true;
    element.style.opacity = "0.85";
  }
  return widget;
}

// The node's own notes (from its last result) then those sent while other nodes ran, by key.
function renderNotes(node) {
  const lines = [...(node.ipadapterNotes ?? []), ...Object.values(node.ipadapterLiveNotes ?? {}).flat()];
  const existing = node.widgets?.some((w) => w.name === NOTES_WIDGET);
  if (lines.length || existing) showNotes(node, lines);
}

function nodeById(id) {
  const graph = app.graph ?? app.rootGraph;
  return graph?.getNodeById?.(id) ?? graph?.getNodeById?.(Number(id)) ?? null;
}

export function showNotes(node, notes) {
  if (!ComfyWidgets) return;
  const text = (Array.isArray(notes) ? notes : [notes]).join("\n");
  const widget = node.widgets?.find((w) => w.name === NOTES_WIDGET) ?? addNotesWidget(node);
  widget.value = text;
  const element = notesElement(widget);
  if (element && element.value !== text) element.value = text;
  // Grow the node so the box sits inside it with room for the text (about 40 characters a line, at most 10
  // lines; the box scrolls beyond). A widget added after the node was sized is not counted in its size yet.
  const lines = Math.min(10, text.split("\n").reduce((n, line) => n + 1 + Math.floor(line.length / 40), 0));
  const wanted = node.computeSize();
  node.setSize([Math.max(node.size[0], wanted[0]), Math.max(node.size[1], wanted[1] + 13 * lines)]);
  node.onResize?.(node.size);
  node.setDirtyCanvas?.(true, true);
}

app.registerExtension({
  name: "ipadapter_suite.notes",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!isOurNode(nodeData)) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (output) {
      onExecuted?.apply(this, arguments);
      this.ipadapterNotes = Array.isArray(output?.text) ? output.text : [];
      renderNotes(this);
    };
  },
  setup() {
    api?.addEventListener?.(NOTES_EVENT, ({ detail }) => {
      const node = detail && nodeById(detail.node);
      if (!node || typeof detail.key !== "string") return;
      node.ipadapterLiveNotes = { ...(node.ipadapterLiveNotes ?? {}), [detail.key]: detail.text ?? [] };
      renderNotes(node);
    });
  },
});
