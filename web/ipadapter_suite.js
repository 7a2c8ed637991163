// IPAdapter Suite frontend extension: opens workflows saved with ComfyUI_IPAdapter_plus v1 (before its
// 2024-03 rewrite) with their values intact. It only rewrites the graph data of the workflow being
// opened (beforeConfigureGraph runs before node types are resolved); nothing else is changed.
//
// * IPAdapterEncoder: v1 and v2 share the id with different widgets (incumbent-v1.md §1.14). A v1 node
//   (its first saved value a boolean, a list not 1 long, or no `ipadapter` socket) becomes this pack's
//   IPAdapterEncoderV1, whose widgets are v1's: ipadapter_plus, noise, weight_1..4. The 2-item layout of
//   Sept/Oct 2023 ([plus, noise], socket `image`) is a prefix of that and only has its socket renamed.
// * PrepImageForClipVision: the 4-item layout of Sept/Oct 2023 [interpolation, crop_position,
//   sharpening, add_weight] with torch interpolation names becomes today's 3 items with PIL names.
// Every other v1 id is unique and registered by the server with its v1 widget order, so short lists
// (older v1 versions) are read as prefixes and padded with defaults, as LiteGraph does by itself.
// A migrated node loses its `widgets_values_named` (newer frontends save it next to the list and, with
// named restore on, prefer it): the rewritten `widgets_values` is the one layout that matches the new node.
//
// `app` comes from window.comfyAPI (every frontend since the TypeScript port); the legacy module is only
// imported, dynamically, where that is missing: a static import of a module a frontend dropped would
// stop this whole file from loading.
const app = window.comfyAPI?.app?.app ?? (await import("../../scripts/app.js")).app;

const V1_ENCODER = "IPAdapterEncoderV1";
const INTERPOLATION_V1 = {
  lanczos: "LANCZOS", bicubic: "BICUBIC", bilinear: "BILINEAR", nearest: "NEAREST", "nearest-exact": "NEAREST",
  area: "BOX",
};

export function isV1Encoder(node) {
  if (node?.type !== "IPAdapterEncoder") return false;
  const values = node.widgets_values;
  const names = (node.inputs ?? []).map((input) => input?.name);
  if (Array.isArray(values) && (values.length !== 1 || typeof values[0] === "boolean")) return true;
  return names.length > 0 && !names.includes("ipadapter") && (names.includes("image_1") || names.includes("image"));
}

export function migrateNode(node) {
  const changed = rewriteNode(node);
  if (changed && node && "widgets_values_named" in node) delete node.widgets_values_named;
  return changed;
}

function rewriteNode(node) {
  if (isV1Encoder(node)) {
    node.type = V1_ENCODER;
    for (const input of node.inputs ?? []) {
      if (input?.name === "image") input.name = "image_1";
    }
    if (node.properties?.["Node name for S&R"] === "IPAdapterEncoder") node.properties["Node name for S&R"] = V1_ENCODER;
    return true;
  }
  if (node?.type === "PrepImageForClipVision" && Array.isArray(node.widgets_values) && node.widgets_values.length === 4) {
    const [interpolation, crop, sharpening] = node.widgets_values;
    node.widgets_values = [INTERPOLATION_V1[interpolation] ?? interpolation, crop, sharpening];
    return true;
  }
  return false;
}

export function migrateGraph(graphData) {
  let changed = 0;
  const visit = (nodes) => {
    for (const node of nodes ?? []) if (migrateNode(node)) changed += 1;
  };
  visit(graphData?.nodes);
  for (const subgraph of graphData?.definitions?.subgraphs ?? []) visit(subgraph.nodes);
  return changed;
}

app.registerExtension({
  name: "ipadapter_suite.v1_workflows",
  async beforeConfigureGraph(graphData) {
    const changed = migrateGraph(graphData);
    if (changed) console.info(`[IPAdapter Suite] migrated ${changed} v1 node(s) of the opened workflow`);
  },
});
