"""What the generated help pages add to a node's declaration: when to pick the node, wiring hints, mistakes.

``scripts/gen_node_docs.py`` renders these next to the declared description, inputs and outputs. Each mistake
quotes an ``IPAdapterError`` text the pack really raises ("…" where the pack fills in names or sizes), and
``tests/host/test_locales_docs.py`` checks that every literal part of it still occurs in the pack's source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from scripts.gen_common import NodeDecl

Pair = tuple[str, str]  # (English, Chinese)

# When to pick the node over its siblings (nodes whose page is generated; the others are hand-written).
ABOUT: dict[str, Pair] = {
    "IPAdapterTiledBatch": (
        "The batch form of *IPAdapter Tiled*: each reference image is tiled and image *i* conditions latent *i*. "
        "Pick it for animations from a sequence of large or non-square frames; for one picture use *IPAdapter Tiled*.",
        "“IPAdapter 分块”的批次版：每张参考图各自分块，第 i "
        "张图作用于第 i 个 latent。适合用一串大尺寸或非正方形的帧做动画；"
        "单张图请用“IPAdapter 分块”。"),
    "IPAdapterEmbedsBatch": (
        "Like *IPAdapter Embeds*, but row *i* of the embeds conditions latent *i* instead of every latent seeing "
        "all rows. Pick it when the embeds were encoded from a frame sequence.",
        "与“IPAdapter 嵌入”相同，但第 i 行嵌入只作用于第 i 个 "
        "latent，而不是每个 latent 都看到全部嵌入。适合由帧序列编码得到的嵌入。"),
    "IPAdapterStyleCompositionBatch": (
        "The batch form of *IPAdapter Style & Composition* (no combine_embeds: style and composition image *i* "
        "condition latent *i*). For a single picture use *IPAdapter Style & Composition*.",
        "“IPAdapter 风格与构图”的批次版（没有嵌入合并方式：第 i 张风格图和构图图作用于第 i 个 latent）。单张图请用"
        "“IPAdapter 风格与构图”。"),
    "IPAdapterMS": (
        "For experiments: weight each UNet layer (or each Flux/SD3.5 block) yourself with `layer_weights`. Pick it "
        "only when no weight type of *IPAdapter Advanced* does what you want; it also accepts FaceID adapters.",
        "用于实验：用“分层权重”自己给 UNet 每一层（或 Flux/SD3.5 "
        "的每个块）设权重。只有“IPAdapter 高级”的权重类型都不合适时"
        "才用它；它也接受 FaceID 模型。"),
    "IPAdapterClipVisionEnhancer": (
        "Pick it over *IPAdapter Advanced* when small details of the reference get lost: the image is also encoded "
        "as a grid of crops. Costs one extra encoder pass per tile.",
        "参考图的细节丢失时，用它代替“IPAdapter 高级”：图像还会被切成网格分块分别编码。每个分块多一次编码。"),
    "IPAdapterClipVisionEnhancerBatch": (
        "The batch form of *IPAdapter ClipVision Enhancer*: image *i* (with its crops) conditions latent *i*.",
        "“IPAdapter CLIP视觉增强”的批次版：第 i 张图（及其分块）作用于第 i 个 latent。"),
    "IPAdapterPreciseStyleTransfer": (
        "Pick it over the `style transfer` weight type when the reference's layout leaks into the result: "
        "`style_boost` also pushes the negative away from the reference's composition.",
        "当参考图的布局渗入结果时，用它代替权重类型“style transfer”：“风格增强”还会让负面分支远离参考图的构图。"),
    "IPAdapterPreciseStyleTransferBatch": (
        "The batch form of *IPAdapter Precise Style Transfer*: image *i* conditions latent *i*.",
        "“IPAdapter 精确风格迁移”的批次版：第 i 张图作用于第 i 个 latent。"),
    "IPAdapterPreciseComposition": (
        "Pick it over the `composition` weight type when the reference's colours or style leak into the result: "
        "`composition_boost` also pushes the negative away from the reference's style.",
        "当参考图的色彩或风格渗入结果时，用它代替权重类型“composition”：“构图增强”还会让负面分支远离参考图的风格。"),
    "IPAdapterPreciseCompositionBatch": (
        "The batch form of *IPAdapter Precise Composition*: image *i* conditions latent *i*.",
        "“IPAdapter 精确构图”的批次版：第 i 张图作用于第 i 个 latent。"),
    "IPAAdapterFaceIDBatch": (
        "The batch form of *IPAdapter FaceID* (the id's double A is the original pack's, kept for saved "
        "workflows): face *i* conditions latent *i*, e.g. one face per animation frame.",
        "“IPAdapter FaceID 人脸”的批次版（节点 ID 中的双 "
        "A 来自原插件，为兼容保存的工作流而保留）：第 i 张人脸作用于第 i 个 "
        "latent，例如动画中每帧一张人脸。"),
    "IPAdapterFaceIDKolors": (
        "For the Kolors FaceID-Plus adapter only (antelopev2 faces, ViT-L-336 CLIP). Other FaceID models use "
        "*IPAdapter FaceID*.",
        "只用于 Kolors FaceID-Plus 模型（antelopev2 人脸模型、"
        "ViT-L-336 CLIP）。其他 FaceID 模型请用“IPAdapter FaceID 人脸”。"),
    "IPAdapterCombineEmbeds": (
        "Pick it to mix references with per-image weights: encode each with *IPAdapter Encoder* (its `weight` "
        "balances them), merge here, apply with *IPAdapter Embeds*.",
        "需要按图分别加权混合多张参考图时使用：先用“IPAdapter 编码器”分别编码（其“权重”用于平衡），在此合并，再用"
        "“IPAdapter 嵌入”应用。"),
    "IPAdapterNoise": (
        "A helper for `image_negative`: a noisy negative often reduces burnt or washed-out results at high weights.",
        "“负面参考图”的辅助节点：用噪波图作负面参考，在高权重下常能减轻烧图或褪色。"),
    "PrepImageForClipVision": (
        "Use it before an apply node when the subject is not in the centre of a non-square reference: you choose "
        "what the square crop keeps (or pad), instead of the encoder's centre crop.",
        "当非正方形参考图的主体不在中间时，在应用节点前使用："
        "由你决定正方形裁剪保留哪部分（或填充），而不是让编码器居中裁剪。"),
    "IPAdapterSaveEmbeds": (
        "Saves encoded references so later runs can skip the CLIP encoder: pair it with *IPAdapter Load Embeds*.",
        "保存编码好的参考图，之后的运行就不必再跑 CLIP 编码器：与“IPAdapter 加载嵌入”配合使用。"),
    "IPAdapterLoadEmbeds": (
        "Loads what *IPAdapter Save Embeds* (or ComfyUI_IPAdapter_plus) wrote; apply it with *IPAdapter Embeds*.",
        "加载“IPAdapter 保存嵌入”（或 ComfyUI_IPAdapter_plus）保存的文件；用“IPAdapter 嵌入”应用。"),
    "IPAdapterWeights": (
        "For animations: a weight per frame (ramps, cross-fades between reference images) to feed the `weight` "
        "of *IPAdapter Batch (Adv.)*. A single weight needs no schedule.",
        "用于动画：生成逐帧权重（渐变、参考图之间的交叉渐变），"
        "接到“IPAdapter 批次（高级）”的“权重”。单一权重不需要它。"),
    "IPAdapterWeightsFromStrategy": (
        "Re-uses the settings of an *IPAdapter Weights* node (its `weights_strategy` output) elsewhere in the graph.",
        "在工作流的其他地方复用“IPAdapter 逐帧权重”节点的设置（其“权重策略”输出）。"),
    "IPAdapterPromptScheduleFromWeightsStrategy": (
        "Writes a text prompt schedule that changes prompt exactly where the weights schedule changes image.",
        "生成文本提示词调度，在权重序列切换参考图的同一帧切换提示词。"),
    "IPAdapterCombineWeights": (
        "Joins two weights or schedules end to end (e.g. two animation segments).",
        "把两个权重或逐帧权重首尾拼接（例如两段动画）。"),
    "IPAdapterCombineParams": (
        "Needed only with more than one region: joins the params of several *IPAdapter Regional Conditioning* "
        "nodes for one *IPAdapter from Params*.",
        "只在有多个区域时需要：把多个“IPAdapter 区域条件”的参数合并，供一个“IPAdapter 从参数应用”使用。"),
    "IPAdapterApply": (
        "Opens and runs workflows saved before March 2024. Hidden from the node search; do not use it in new graphs.",
        "用于打开并运行 2024 年 3 月之前保存的工作流。节点搜索中不显示；新工作流不要使用。"),
    "IPAdapterApplyEncoded": (
        "Opens and runs v1 workflows that applied encoded embeds. New graphs: *IPAdapter Embeds*.",
        "用于打开并运行应用了编码嵌入的 v1 工作流。新工作流请用“IPAdapter 嵌入”。"),
    "IPAdapterTilesMasked": (
        "Opens and runs v1 workflows with masked tiles. New graphs: *IPAdapter Tiled*.",
        "用于打开并运行使用遮罩分块的 v1 工作流。新工作流请用“IPAdapter 分块”。"),
    "IPAdapterEncoderV1": (
        "v1 workflows saved with the old encoder open with this node (the pack's web extension switches them). "
        "New graphs: *IPAdapter Encoder*.",
        "用旧编码器保存的 v1 工作流会以此节点打开（由本插件的前端扩展自动替换）。新工作流请用“IPAdapter 编码器”。"),
    "IPAdapterBatchEmbeds": (
        "Opens and runs v1 workflows that joined embeds. New graphs: *IPAdapter Combine Embeds* with `concat`.",
        "用于打开并运行拼接嵌入的 v1 工作流。新工作流请用“IPAdapter 合并嵌入”（concat）。"),
    "IPAdapterApplyFaceID": (
        "Opens and runs v1 FaceID workflows (it applies no LoRA, as in v1). New graphs: *IPAdapter FaceID* with "
        "*IPAdapter Unified Loader FaceID*.",
        "用于打开并运行 v1 的 FaceID 工作流（与 v1 一样不应用 LoRA）。新工作流请用“IPAdapter FaceID 人脸”配合"
        "“IPAdapter 统一加载器 FaceID”。"),
    "InsightFaceLoader": (
        "The v1 face-model loader, for saved v1 graphs. New graphs: *IPAdapter InsightFace Loader*.",
        "v1 的人脸模型加载器，用于保存的 v1 工作流。新工作流请用“IPAdapter InsightFace 加载器”。"),
    "PrepImageForInsightFace": (
        "The v1 face-photo preparation, for saved v1 graphs. The modern FaceID nodes detect and align faces "
        "themselves and need no preparation.",
        "v1 的人脸照片预处理，用于保存的 v1 工作流。新的 FaceID 节点会自己检测并对齐人脸，不需要预处理。"),
}

# Where a socket input usually comes from, by socket type (widgets are set on the node, not wired).
SOURCES: dict[str, Pair] = {
    "MODEL": ("Load Checkpoint, a LoRA loader, or a unified loader's `model` output",
              "Checkpoint加载器（简易）、LoRA 加载器，或统一加载器的“模型”输出"),
    "IPADAPTER": ("IPAdapter Unified Loader or IPAdapter Model Loader",
                  "“IPAdapter 统一加载器”或“IPAdapter 模型加载器”"),
    "IMAGE": ("Load Image (several pictures: Batch Images)", "加载图像（多张图：组合图像批次）"),
    "MASK": ("a mask: Load Image's MASK output, Solid Mask, or the mask editor",
             "遮罩：加载图像的遮罩输出、纯块遮罩或遮罩编辑器"),
    "CLIP_VISION": ("Load CLIP Vision", "加载CLIP视觉"),
    "INSIGHTFACE": ("IPAdapter InsightFace Loader", "“IPAdapter InsightFace 加载器”"),
    "EMBEDS": ("IPAdapter Encoder, IPAdapter Load Embeds or IPAdapter Combine Embeds",
               "“IPAdapter 编码器”、“IPAdapter 加载嵌入”或“IPAdapter 合并嵌入”"),
    "IPADAPTER_PARAMS": ("IPAdapter Regional Conditioning or IPAdapter Combine Params",
                         "“IPAdapter 区域条件”或“IPAdapter 合并参数”"),
    "WEIGHTS_STRATEGY": ("the `weights_strategy` output of IPAdapter Weights", "“IPAdapter 逐帧权重”的“权重策略”输出"),
    "CONDITIONING": ("CLIP Text Encode", "CLIP文本编码"),
}
SOURCES_BY_NAME: dict[str, Pair] = {
    "image_negative": ("IPAdapter Noise, or Load Image", "“IPAdapter 噪波”，或加载图像"),
}
V1_EMBEDS: Pair = ("Encode IPAdapter Image (v1) or IPAdapter Batch Embeds (v1)",
                   "“编码 IPAdapter 图像（v1）”或“IPAdapter 批次嵌入（v1）”")
SOURCE_OVERRIDES: dict[tuple[str, str], Pair] = {
    ("IPAdapterApplyEncoded", "embeds"): V1_EMBEDS,
    ("IPAdapterBatchEmbeds", "embed1"): V1_EMBEDS,
    ("IPAdapterBatchEmbeds", "embed2"): V1_EMBEDS,
    ("IPAdapterApplyFaceID", "insightface"): ("Load InsightFace (v1) or IPAdapter InsightFace Loader",
                                              "“加载 InsightFace（v1）”或“IPAdapter InsightFace 加载器”"),
}

# Where an output usually goes, by type.
DESTINATIONS: dict[str, Pair] = {
    "MODEL": ("KSampler's `model` (or the next IPAdapter node, to stack adapters)",
              "K采样器的“模型”（或下一个 IPAdapter 节点，用于叠加多个 IPAdapter）"),
    "IMAGE": ("Preview Image, or the `image` / `image_negative` of an IPAdapter node",
              "预览图像，或 IPAdapter 节点的“参考图”/“负面参考图”"),
    "MASK": ("another node's `attn_mask`, or Convert Mask to Image to look at it",
             "其他节点的“注意力遮罩”，或用“遮罩转换为图像”查看"),
    "EMBEDS": ("IPAdapter Embeds, IPAdapter Combine Embeds or IPAdapter Save Embeds",
               "“IPAdapter 嵌入”、“IPAdapter 合并嵌入”或“IPAdapter 保存嵌入”"),
    "FLOAT": ("the `weight` of IPAdapter Batch (Adv.) or another batch node",
              "“IPAdapter 批次（高级）”或其他批次节点的“权重”"),
    "INT": ("an INT input, e.g. the batch_size of Empty Latent Image", "整数输入，例如空Latent图像的批次大小"),
    "WEIGHTS_STRATEGY": ("IPAdapter Weights From Strategy or Prompt Schedule From Weights Strategy",
                         "“IPAdapter 逐帧权重（按策略）”或“按权重策略生成提示词调度”"),
    "STRING": ("a text input, e.g. a batch prompt schedule node", "文本输入，例如批量提示词调度节点"),
    "IPADAPTER_PARAMS": ("IPAdapter from Params (or another Combine Params)",
                         "“IPAdapter 从参数应用”（或另一个“IPAdapter 合并参数”）"),
    "INSIGHTFACE": ("the `insightface` input of a FaceID node", "FaceID 节点的“InsightFace”输入"),
    "CONDITIONING": ("KSampler's positive / negative", "K采样器的正面/负面条件"),
}
DESTINATION_OVERRIDES: dict[tuple[str, str], Pair] = {
    ("IPAdapterEncoderV1", "EMBEDS"): ("Apply IPAdapter from Encoded (v1) or IPAdapter Batch Embeds (v1)",
                                       "“从编码应用 IPAdapter（v1）”或“IPAdapter 批次嵌入（v1）”"),
    ("IPAdapterBatchEmbeds", "EMBEDS"): ("Apply IPAdapter from Encoded (v1)", "“从编码应用 IPAdapter（v1）”"),
    ("PrepImageForInsightFace", "IMAGE"): ("the `image` of Apply IPAdapter FaceID (v1)",
                                           "“应用 IPAdapter FaceID（v1）”的“人脸图像”"),
}

# What an output is, when the node declares no OUTPUT_TOOLTIPS: by output name, else by type.
OUTPUT_NOTES: dict[str, Pair] = {
    "MODEL": ("The model with the adapter applied (a clone: the input model is unchanged).",
              "应用了 IPAdapter 的模型（克隆体：输入的模型不变）。"),
    "tiles": ("The tiles the reference was cut into.", "参考图切成的分块。"),
    "masks": ("One mask per tile: where in the picture that tile acts.",
    "每个分块一个遮罩：该分块在画面中作用的区域。"),
    "EMBEDS": ("The embeds.", "嵌入。"),
    "IMAGE": ("The prepared image(s).", "处理后的图像。"),
    "INSIGHTFACE": ("The face model.", "人脸模型。"),
    "IPADAPTER_PARAMS": ("The params of every region joined.", "合并后的所有区域参数。"),
    "weights": ("The weight of every frame.", "每一帧的权重。"),
    "weights_invert": ("The mirrored weights (max + min - w): the partner of a cross-fade.",
                       "镜像的权重（最大值 + 最小值 - w）：交叉渐变的另一半。"),
    "total_frames": ("How many frames the schedule covers.", "权重序列覆盖的帧数。"),
    "image_1": ("The image batch that goes with `weights` (one image per frame).",
    "与“权重列表”对应的图像批次（每帧一张）。"),
    "image_2": ("The image batch that goes with `weights_invert` (cross-fades).",
                "与“反转权重”对应的图像批次（交叉渐变）。"),
    "weights_strategy": ("The schedule's settings, to re-use them elsewhere.", "权重序列的设置，可在别处复用。"),
    "prompt_schedule": ("The prompt schedule text.", "提示词调度文本。"),
    "count": ("How many weights the list holds.", "列表中权重的个数。"),
}
OUTPUT_NOTE_OVERRIDES: dict[tuple[str, str], Pair] = {
    ("IPAdapterNoise", "IMAGE"): ("The noise image (224x224).", "噪波图（224x224）。"),
    ("IPAdapterCombineEmbeds", "EMBEDS"): ("The merged embeds.", "合并后的嵌入。"),
    ("IPAdapterLoadEmbeds", "EMBEDS"): ("The embeds read from the file.", "从文件读取的嵌入。"),
    ("IPAdapterEncoderV1", "EMBEDS"): ("A v1 embeds pair "
     "(reference and negative stacked).", "v1 嵌入对（参考与负面叠在一起）。"),
    ("IPAdapterBatchEmbeds", "EMBEDS"): ("The joined v1 embeds pair.", "拼接后的 v1 嵌入对。"),
    ("PrepImageForClipVision", "IMAGE"): ("Square image(s) "
     "at the encoder's input size.", "编码器输入尺寸的正方形图像。"),
    ("PrepImageForInsightFace", "IMAGE"): ("640 px square image(s).", "640 px 的正方形图像。"),
}


@dataclass(frozen=True)
class Mistake:
    """A message the pack raises (``message``, "…" where the pack fills in names or sizes), and what to do."""

    applies: Callable[[NodeDecl], bool]
    message: str
    fix: str
    zh_meaning: str
    zh_fix: str


def _has(*names: str) -> Callable[[NodeDecl], bool]:
    return lambda d: any(i.name in names for i in d.inputs)


def _is(*node_ids: str) -> Callable[[NodeDecl], bool]:
    return lambda d: d.node_id in node_ids


_V1 = ("IPAdapterApply", "IPAdapterApplyEncoded", "IPAdapterTilesMasked", "IPAdapterApplyFaceID")
_CHECKS_NOT_FACE = ("IPAdapterTiledBatch", "IPAdapterEmbedsBatch", "IPAdapterStyleCompositionBatch",
                    "IPAdapterClipVisionEnhancer", "IPAdapterClipVisionEnhancerBatch", "IPAdapterPreciseStyleTransfer",
                    "IPAdapterPreciseStyleTransferBatch", "IPAdapterPreciseComposition",
                    "IPAdapterPreciseCompositionBatch")
_FACES = ("IPAAdapterFaceIDBatch", "IPAdapterFaceIDKolors", "IPAdapterApplyFaceID")

MISTAKES: tuple[Mistake, ...] = (
    Mistake(lambda d: any(i.name == "ipadapter" and i.required for i in d.inputs),
            "No IP-Adapter model reached this node.",
            "Connect the `ipadapter` output of a loader node.",
            "没有 IPAdapter 模型连到此节点。", "把加载器节点的 IPAdapter 输出连到此节点。"),
    Mistake(lambda d: _has("model")(d) and _has("ipadapter")(d),
            "The adapter is a … model (…) but the checkpoint is ….",
            "The adapter was made for another base model (SD1.5 vs SDXL): load the adapter for your checkpoint's "
            "family. The SDXL refiner cannot take image prompts: apply the adapter to the SDXL base model.",
            "IPAdapter 与底模系列不符（SD1.5 与 SDXL）。",
            "加载与底模系列对应的 IPAdapter。SDXL 精炼模型（refiner）不能接受图像提示，"
            "请把 IPAdapter 应用到 SDXL 基础模型上。"),
    Mistake(_is(*_CHECKS_NOT_FACE),
            "This is a FaceID adapter (…); it needs a face embedding "
            "from InsightFace, which this node does not compute.",
            "Use *IPAdapter FaceID* with *IPAdapter Unified Loader FaceID* for FaceID models.",
            "这是 FaceID 模型，需要 InsightFace 的人脸嵌入，而此节点不计算它。",
            "FaceID 模型请用“IPAdapter FaceID 人脸”配合“IPAdapter 统一加载器 FaceID”。"),
    Mistake(_is("IPAdapterApply", "IPAdapterApplyEncoded", "IPAdapterTilesMasked"),
            "This is a FaceID adapter (…); v1 '…' has no InsightFace input.",
            "Use *Apply IPAdapter FaceID (v1)* with *Load InsightFace (v1)*, or the modern *IPAdapter FaceID*.",
            "这是 FaceID 模型，而此 v1 节点没有 InsightFace 输入。",
            "请用“应用 IPAdapter FaceID（v1）”配合“加载 InsightFace（v1）”，或新的“IPAdapter FaceID 人脸”。"),
    Mistake(lambda d: _has("clip_vision")(d) and d.node_id not in ("PrepImageForClipVision", "IPAdapterEncoderV1"),
            "Wrong CLIP vision for this adapter: the … adapter needs …, but the connected encoder is …",
            "Load the encoder file the message names in *Load CLIP Vision*, or leave `clip_vision` empty and let "
            "the unified loader pick it.",
            "CLIP视觉编码器与 IPAdapter 不匹配。",
            "在“加载CLIP视觉”中加载报错信息里给出的编码器文件，或不连接“CLIP视觉”，让统一加载器自动选择。"),
    Mistake(lambda d: _has("image", "image_style", "image_composition", "image_1")(d) and _has("ipadapter")(d)
            and d.node_id not in _FACES,
            "The image batch is empty.",
            "Connect a Load Image node (or a non-empty batch).",
            "图像批次为空。", "连接“加载图像”节点（或非空的图像批次）。"),
    Mistake(_is(*_FACES),
            "No face found in image … of … (…), even at the smallest detection size (… px).",
            "Use a picture where the face is clearly visible and not tiny; crop closer around it, or remove that "
            "picture from the batch.",
            "图像中没有检测到人脸。", "换一张人脸清晰、不太小的照片；裁剪得离人脸更近些，或把这张图从批次中移除。"),
    Mistake(_has("attn_mask"),
            "The mask has shape …",
            "Connect a MASK output (Load Image's mask, Solid Mask ...), not an IMAGE.",
            "遮罩的形状不对。", "连接遮罩（MASK）输出（加载图像的遮罩、纯块遮罩等），而不是图像（IMAGE）。"),
    Mistake(lambda d: _has("weight_type")(d) and _has("ipadapter")(d) and d.node_id not in _V1,
            "The weight type '…' is defined over UNet layers and "
            "has no meaning on a … transformer, so it is not applied.",
            "On Flux.1 and SD3.5 set `weight_type` to `linear` (and `embeds_scaling` to `V only`).",
            "该权重类型按 UNet 层定义，在 Flux/SD3.5 的 transformer 上没有意义。",
            "在 Flux.1 和 SD3.5 上把“权重类型”设为 linear（“嵌入缩放”设为 V only）。"),
    Mistake(_has("style_boost", "composition_boost"),
            "Style and composition boosts select UNet layers; the … adapter (…) has no such layers.",
            "Precise style/composition works on SD1.5 and SDXL only; on Flux.1 and SD3.5 use *IPAdapter Advanced* "
            "with weight type `linear`.",
            "风格/构图增强按 UNet 层选择，Flux/SD3.5 没有这些层。",
            "精确风格/构图只适用于 SD1.5 和 SDXL；Flux.1 和 SD3.5 请用“IPAdapter 高级”，权重类型选 linear。"),
    Mistake(_has("layer_weights"),
            "'…' is not a 'layer:weight' pair.",
            "Write pairs like `0:0.5, 6:1.0` (transformer index, then weight).",
            "“分层权重”的格式不对。", "按“0:0.5, 6:1.0”的格式填写（transformer 序号:权重）。"),
    Mistake(_has("layer_weights"),
            "Layer … does not exist in this model.",
            "Use the indices the message lists (SD1.5: 0-15, SDXL: 0-10; Flux/SD3.5 blocks: docs/dit.md).",
            "填写的层序号在此模型中不存在。",
            "使用报错信息列出的序号（SD1.5：0-15，SDXL：0-10；Flux/SD3.5 的块见 docs/dit.md）。"),
    Mistake(_has("insightface"),
            "The insightface input is a …, not this pack's face model.",
            "Connect *IPAdapter InsightFace Loader*; other packs' INSIGHTFACE values differ.",
            "连接的不是本插件的人脸模型。", "连接“IPAdapter InsightFace 加载器”；其他插件的 INSIGHTFACE 数据不兼容。"),
    Mistake(_is("IPAdapterFaceIDKolors"),
            "Kolors FaceID needs the UNet's encoder_hid_proj (ChatGLM 4096 "
            "-> 2048), and this model has none: ComfyUI's own loaders drop it.",
            "Load the Kolors UNet with a loader that keeps `encoder_hid_proj` (the message names one).",
            "Kolors FaceID 需要 UNet 的 encoder_hid_proj，而 ComfyUI 自带的加载器会丢掉它。",
            "用保留 encoder_hid_proj 的加载器加载 Kolors UNet（报错信息中给出了例子）。"),
    Mistake(_has("pos_embed"),
            "These are pooled image embeds but the adapter needs hidden states.",
            "Re-encode the image with this adapter connected to *IPAdapter Encoder*.",
            "这是池化的图像嵌入，而该 IPAdapter 需要隐藏状态。",
            "把此 IPAdapter 连到“IPAdapter 编码器”，重新编码参考图。"),
    Mistake(lambda d: _has("pos_embed")(d) or d.node_id == "IPAdapterSaveEmbeds",
            "The embeds are … wide but the … adapter reads …-wide ….",
            "The embeds were made with another adapter or CLIP vision: encode the image with the adapter you apply.",
            "嵌入的宽度与 IPAdapter 不符（由其他 IPAdapter 或 CLIP视觉编码而来）。",
            "用要应用的这个 IPAdapter 重新编码参考图。"),
    Mistake(lambda d: _has("embed2")(d) and d.node_id == "IPAdapterCombineEmbeds",
            "… has shape … but embed1 has ….",
            "Every embed must come from the same adapter and CLIP vision: re-encode the odd one.",
            "各嵌入的形状不一致。", "所有嵌入必须由同一个 IPAdapter 和 CLIP视觉编码得到：重新编码不一致的那个。"),
    Mistake(_is("IPAdapterLoadEmbeds"),
            "'…' is a safetensors file but not one 'IPAdapter Save Embeds' wrote.",
            "Pick an embeds file; model files belong in the models folders and their loaders.",
            "这个 safetensors 文件不是“IPAdapter 保存嵌入”写出的。",
            "选择嵌入文件；模型文件应放在 models 文件夹并用相应的加载器加载。"),
    Mistake(_is("IPAdapterSaveEmbeds", "IPAdapterLoadEmbeds"),
            "…, not an embeds tensor.",
            "Connect an EMBEDS output (from *IPAdapter Encoder*), or pick a file saved by *IPAdapter Save Embeds*.",
            "输入的不是嵌入张量。",
            "连接嵌入（EMBEDS）输出（来自“IPAdapter 编码器”），或选择“IPAdapter 保存嵌入”保存的文件。"),
    Mistake(_is("IPAdapterWeights"),
            "'…' in the weights is not a number.",
            "Separate numbers with commas or new lines, e.g. `1.0, 0.0`.", "权重中有不是数字的内容。",
            "用逗号或换行分隔数字，例如“1.0, 0.0”。"),
    Mistake(_is("IPAdapterWeights"),
            "'…' cross-fades between consecutive images but the batch has 1 image.",
            "Batch several images, or use the method `full batch`.", "交叉渐变需要至少两张图，而批次中只有一张。",
            "组合多张图像成批次，或把批次方式改为 full batch。"),
    Mistake(_has("weights_strategy"),
            "This is not a weights strategy.",
            "Connect the `weights_strategy` output of an *IPAdapter Weights* node.",
            "输入的不是权重策略。", "连接“IPAdapter 逐帧权重”节点的“权重策略”输出。"),
    Mistake(_has("params_1"),
            "These are not IPAdapter params (or their lists have different lengths).",
            "Connect *IPAdapter Regional Conditioning* or another *IPAdapter Combine Params*.",
            "输入的不是 IPAdapter 区域参数。", "连接“IPAdapter 区域条件”或另一个“IPAdapter 合并参数”。"),
    Mistake(_has("provider"),
            "InsightFace provider '…' is not available in this onnxruntime build (available: …); running on CPU.",
            "Not an error: InsightFace runs on CPU. Install the onnxruntime build the warning names to use the GPU.",
            "所选后端在当前 onnxruntime 中不可用（只是警告，会改用 CPU 运行）。",
            "要用 GPU，请安装警告中给出的 onnxruntime 版本。"),
    Mistake(_is("InsightFaceLoader"),
            "FaceID models need the insightface package, which is not installed in ComfyUI's Python.",
            "Install it with the command the message prints, then restart ComfyUI (docs/faceid.md).",
            "ComfyUI 的 Python 中没有安装 insightface。",
            "运行报错信息给出的安装命令，然后重启 ComfyUI（见 docs/faceid.md）。"),
    Mistake(_has("enhance_tiles"),
            "The image (…x…) is too small to cut into …x… tiles.",
            "Lower `enhance_tiles`, or feed a larger reference (about 224 x n px square).",
            "参考图太小，无法切成这么多分块。", "减小“增强分块数”，或使用更大的参考图（约 224 x n px 的正方形）。"),
    Mistake(_is("IPAdapterApplyEncoded"),
            "These embeds (…) are not a v1 pair (cond and uncond stacked: [2, images, ...]).",
            "Feed it *Encode IPAdapter Image (v1)*; modern embeds go to *IPAdapter Embeds*.",
            "这些嵌入不是 v1 嵌入对。", "请连接“编码 IPAdapter 图像（v1）”；新的嵌入请用“IPAdapter 嵌入”应用。"),
    Mistake(_is("IPAdapterBatchEmbeds"),
            "The two pairs hold different embeds: … vs … per image.",
            "Encode both with the same `ipadapter_plus` setting and CLIP vision model.",
            "两个嵌入对的内容不一致。", "两者都用相同的 IPAdapter Plus 设置和 CLIP视觉模型编码。"),
    Mistake(_is("IPAdapterNoise", "PrepImageForClipVision", "PrepImageForInsightFace"),
            "The image has shape …",
            "Connect an IMAGE output (Load Image, VAE Decode ...).",
            "图像的形状不对。", "连接图像（IMAGE）输出（加载图像、VAE解码等）。"),
)
