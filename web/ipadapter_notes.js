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

export function showNotes(node, lines) {
  const text = (Array.isArray(lines) ? lines : [lines]).join("\n");
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
