// IPAdapter Suite frontend extension: shows the notes a node of this pack sends with its result
// ({"ui": {"text": [...]}}: FaceID warnings such as "runs without its LoRA", the provider InsightFace
// really uses, the Doctor's report) in a read-only text box under the node. The stock frontend has no
// place for them, so without this they only reach the server console.
//
// The box is never saved: it is the node's last widget and is marked not to serialize, so a workflow's
// widgets_values and the prompt sent to the server stay exactly those of the node's inputs.
import { app } from "../../scripts/app.js";
import { ComfyWidgets } from "../../scripts/widgets.js";

export const NOTES_WIDGET = "ipadapter_notes";

export function isOurNode(nodeData) {
  return typeof nodeData?.category === "string" && nodeData.category.startsWith("ipadapter");
}

export function showNotes(node, notes) {
  const text = (Array.isArray(notes) ? notes : [notes]).join("\n");
  let widget = node.widgets?.find((w) => w.name === NOTES_WIDGET);
  if (!widget) {
    widget = ComfyWidgets.STRING(node, NOTES_WIDGET, ["STRING", { multiline: true }], app).widget;
    widget.serialize = false; // not in the workflow's widgets_values
    widget.options = { ...(widget.options ?? {}), serialize: false }; // not in the prompt
    const element = widget.inputEl ?? widget.element;
    if (element) {
      element.readOnly = true;
      element.style.opacity = "0.85";
    }
  }
  widget.value = text;
  // Grow the node so the box sits inside it with room for the text (about 40 characters a line, at most 10
  // lines; the box scrolls beyond). A widget added after the node was sized is not counted in its size yet.
  const lines = Math.min(10, text.split("\n").reduce((n, line) => n + 1 + Math.floor(line.length / 40), 0));
  const wanted = node.computeSize();
  node.setSize([Math.max(node.size[0], wanted[0]), Math.max(node.size[1], wanted[1] + 13 * lines)]);
  node.setDirtyCanvas?.(true, true);
}

app.registerExtension({
  name: "ipadapter_suite.notes",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!isOurNode(nodeData)) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (output) {
      onExecuted?.apply(this, arguments);
      if (Array.isArray(output?.text) && output.text.length) showNotes(this, output.text);
    };
  },
});
