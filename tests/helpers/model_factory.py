"""Small vision-language models in Hugging Face format, built on disk at test time.

Tests load these through the same ``from_pretrained`` path real users take, so nothing here may
touch the network. Kinds:

- ``build_random_clip`` / ``build_random_siglip``: random weights, for shape and plumbing tests;
- ``train_tiny_clip``: a CLIP trained for a few seconds to tell coloured shapes apart, so that
  retrieval tests have something real to find (and can fail);
- ``build_random_owlvit`` / ``build_random_yolos``: detection models (zero-shot and closed-set)
  with random weights, for the region detector's loading and box path.

``render_shape`` draws the synthetic images both for training and for tests.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

SHAPE_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 170, 60),
    "blue": (40, 70, 215),
    "yellow": (230, 210, 40),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
CAPTION_TEMPLATES: tuple[str, ...] = (
    "a {colour} {shape}",
    "{colour} {shape}",
    "a photo of a {colour} {shape}",
    "a {colour} {shape} on a grey background",
    "the {shape} is {colour}",
)
TINY_IMAGE_SIZE = 32

_SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")
# CLIP treats eos_token_id == 2 as a legacy marker and then pools at the highest token id instead,
# so the ids are laid out to keep <eos> off 2.
_PAD_ID, _UNK_ID, _BOS_ID, _EOS_ID = range(4)
_TEXT_POSITIONS = 16

# Where render_shape puts a shape, as fractions of the image side. From-scratch ViTs learn
# translation invariance slowly (measured: circles and squares still confused after 800 steps when
# shapes roam the whole image), so shapes stay large and near the centre: the jitter still moves
# them across patch boundaries, and the tiny CLIP learns all 12 classes in a few hundred steps.
_RADIUS_RANGE = (0.36, 0.46)
_CENTRE_JITTER = 0.05
_SQUARE_HALF_SIDE = 0.9  # relative to the radius: a square about as large as the circle
_COLOUR_JITTER = 12  # per channel; more turns some yellows green
_NOISE_SIGMA = 18.0

# Training recipe for train_tiny_clip.
_TRAINED_TOWERS = {"hidden": 64, "layers": 2, "heads": 4, "projection_dim": 32}
_LEARNING_RATE = 3e-3
_POOL_PER_CLASS = 120
_POOL_RENDER_SIZES = (32, 48, 64, 96, 128)


def caption(colour: str, shape: str, template: str = CAPTION_TEMPLATES[0]) -> str:
    """The caption for one coloured shape, e.g. ``caption("red", "circle") == "a red circle"``."""
    return template.format(colour=colour, shape=shape)


def shape_classes() -> list[tuple[str, str]]:
    """Every (colour, shape) pair the trained model knows, in a fixed order."""
    return [(colour, shape) for colour in SHAPE_COLOURS for shape in SHAPES]


def render_shape(colour: str, shape: str, size: int = TINY_IMAGE_SIZE, seed: int = 0) -> Image.Image:
    """Draw one large filled shape, jittered around the centre, on a noisy grey background.

    The same seed gives the same shape, place, fill and background level at any ``size`` (only
    the pixel noise differs), so tests can serve large renders that the processor shrinks.
    Raises ValueError for an unknown colour or shape, or a size below 8.
    """
    if colour not in SHAPE_COLOURS:
        raise ValueError(f"unknown colour {colour!r}; known: {', '.join(SHAPE_COLOURS)}")
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    rng = np.random.default_rng(seed)
    # Everything but the noise is drawn first, so it does not depend on the size.
    background_level = rng.uniform(70, 190)
    radius = rng.uniform(*_RADIUS_RANGE) * size
    centre_x, centre_y = size / 2 + rng.uniform(-_CENTRE_JITTER, _CENTRE_JITTER, size=2) * size
    jitter = rng.integers(-_COLOUR_JITTER, _COLOUR_JITTER + 1, size=3)
    fill = tuple(int(v) for v in np.clip(np.array(SHAPE_COLOURS[colour]) + jitter, 0, 255))
    noise = rng.normal(0.0, _NOISE_SIGMA, size=(size, size, 3))
    image = Image.fromarray(np.clip(background_level + noise, 0, 255).astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(image)
    if shape == "circle":
        draw.ellipse((centre_x - radius, centre_y - radius, centre_x + radius, centre_y + radius), fill=fill)
    elif shape == "square":
        half = radius * _SQUARE_HALF_SIDE
        draw.rectangle((centre_x - half, centre_y - half, centre_x + half, centre_y + half), fill=fill)
    else:
        corners = [(centre_x + radius * math.cos(math.radians(angle)),
                    centre_y + radius * math.sin(math.radians(angle))) for angle in (-90, 30, 150)]
        draw.polygon(corners, fill=fill)
    return image


def caption_vocabulary() -> list[str]:
    """Every word the caption templates can produce, sorted."""
    words = {word for template in CAPTION_TEMPLATES for colour, shape in shape_classes()
             for word in caption(colour, shape, template).split()}
    return sorted(words)


def build_caption_tokenizer(add_bos: bool = True, pad_with_eos: bool = False):
    """A word-level tokenizer over the caption vocabulary; unknown words become ``<unk>``.

    Lower-cases, drops punctuation, wraps each text in ``<bos> ... <eos>`` (only ``... <eos>``
    when ``add_bos`` is False, as SigLIP does). Returned as a transformers TokenizersBackend, which
    saves a tokenizer.json that AutoTokenizer/AutoProcessor read back.
    """
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import TokenizersBackend

    vocabulary = {token: index for index, token in enumerate(_SPECIAL_TOKENS)}
    for word in caption_vocabulary():
        vocabulary[word] = len(vocabulary)
    tokenizer = Tokenizer(models.WordLevel(vocab=vocabulary, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Sequence([
        normalizers.NFKC(), normalizers.Lowercase(), normalizers.Replace(Regex(r"[^\w\s]"), " ")])
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    template = "<bos> $A <eos>" if add_bos else "$A <eos>"
    tokenizer.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[("<bos>", _BOS_ID), ("<eos>", _EOS_ID)])
    return TokenizersBackend(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<bos>", eos_token="<eos>",
        pad_token="<eos>" if pad_with_eos else "<pad>", model_max_length=_TEXT_POSITIONS)


def _tower_sizes(hidden: int, layers: int, heads: int) -> dict:
    return {"hidden_size": hidden, "intermediate_size": hidden * 2, "num_hidden_layers": layers,
            "num_attention_heads": heads, "attention_dropout": 0.0}


def _text_tower(hidden: int, layers: int, heads: int, pad_id: int) -> dict:
    return {**_tower_sizes(hidden, layers, heads), "vocab_size": len(_SPECIAL_TOKENS) + len(caption_vocabulary()),
            "max_position_embeddings": _TEXT_POSITIONS,
            "pad_token_id": pad_id, "bos_token_id": _BOS_ID, "eos_token_id": _EOS_ID}


def _vision_tower(hidden: int, layers: int, heads: int) -> dict:
    return {**_tower_sizes(hidden, layers, heads), "image_size": TINY_IMAGE_SIZE, "patch_size": 8}


def _clip_config(hidden: int, layers: int, heads: int, projection_dim: int):
    from transformers import CLIPConfig

    return CLIPConfig(text_config=_text_tower(hidden, layers, heads, pad_id=_PAD_ID),
                      vision_config=_vision_tower(hidden, layers, heads), projection_dim=projection_dim)


def _clip_processor(centre_crop: bool = True):
    from transformers import CLIPImageProcessorPil, CLIPProcessor

    square = {"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE}
    if centre_crop:  # what released CLIP checkpoints do
        image_processor = CLIPImageProcessorPil(size={"shortest_edge": TINY_IMAGE_SIZE}, crop_size=square)
    else:  # squeeze the whole image in, so nothing at the sides of a wide canvas is cut off
        image_processor = CLIPImageProcessorPil(size=square, do_center_crop=False)
    return CLIPProcessor(image_processor=image_processor, tokenizer=build_caption_tokenizer())


def _seeded_model(model_class, config, seed: int):
    import torch

    # fork_rng keeps the caller's global RNG state untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_class(config)


def _save(model, processor, path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    processor.save_pretrained(path)
    return path


def build_random_clip(path: str | Path, seed: int = 0) -> Path:
    """Save a tiny randomly initialised CLIPModel with a CLIPProcessor under ``path``."""
    from transformers import CLIPModel

    model = _seeded_model(CLIPModel, _clip_config(hidden=32, layers=2, heads=2, projection_dim=24), seed)
    return _save(model, _clip_processor(), Path(path))


def build_random_siglip(path: str | Path, seed: int = 0) -> Path:
    """Save a tiny randomly initialised SiglipModel with a SiglipProcessor under ``path``.

    Real SigLIP checkpoints ship a sentencepiece (SigLIP) or Gemma tokenizer; this one uses the
    word-level caption tokenizer, which SiglipProcessor accepts, so sentencepiece is not needed.
    """
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel, SiglipProcessor

    # SigLIP pads with its end-of-sequence token.
    config = SiglipConfig(text_config=_text_tower(32, 2, 2, pad_id=_EOS_ID), vision_config=_vision_tower(32, 2, 2))
    model = _seeded_model(SiglipModel, config, seed)
    processor = SiglipProcessor(
        image_processor=SiglipImageProcessorPil(size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE}),
        tokenizer=build_caption_tokenizer(add_bos=False, pad_with_eos=True))
    return _save(model, processor, Path(path))


def train_tiny_clip(path: str | Path, steps: int = 300, batch_size: int = 48, seed: int = 0,
                    progress: Callable[[int, float], None] | None = None, clutter: float = 0.0,
                    pool_per_class: int = _POOL_PER_CLASS) -> Path:
    """Train a tiny CLIP to match captions like "a red circle" to rendered shapes; save it.

    Every batch holds the same number of images of each class, so the contrastive targets are
    soft: an image should match every caption of its class equally, and a caption every such
    image. ``progress(step, loss)`` is called after each step. Deterministic for a given seed on
    a given machine; a few seconds on two CPU cores.

    ``clutter`` (0 to 1) is the share of training images that are crops of a synthetic page
    around the shape (``synthetic_pages.render_shape_in_clutter``: support texture, pseudo-text,
    the shape off-centre or partly cut off) instead of a shape on grey: a model for region crops
    of real proposals (bench/regions.py). The default, 0, is the model the tests are tuned on.
    """
    if not 0.0 <= clutter <= 1.0:
        raise ValueError(f"clutter must be between 0 and 1, got {clutter}")
    import torch
    from transformers import CLIPModel

    processor = _clip_processor(centre_crop=False)
    model = _seeded_model(CLIPModel, _clip_config(**_TRAINED_TOWERS), seed)
    classes = shape_classes()
    rng = np.random.default_rng(seed)

    # A fixed pool of renders at several sizes, preprocessed once by the real image processor,
    # so training sees what the processor makes of larger canvases too. Row r holds class r % n.
    pool_images = [render_shape(*classes[row % len(classes)], size=int(rng.choice(_POOL_RENDER_SIZES)),
                                seed=int(rng.integers(2**31))) for row in range(pool_per_class * len(classes))]
    if clutter:
        from tests.helpers.synthetic_pages import render_shape_in_clutter

        # A separate stream, so that the plain renders are those of clutter=0.
        clutter_rng = np.random.default_rng([seed, 1])
        for row in range(len(pool_images)):
            if clutter_rng.random() < clutter:
                pool_images[row] = render_shape_in_clutter(
                    *classes[row % len(classes)], size=int(clutter_rng.choice(_POOL_RENDER_SIZES)),
                    seed=int(clutter_rng.integers(2**31)))
    pool_pixels = processor.image_processor(images=pool_images, return_tensors="pt")["pixel_values"]
    captions = [caption(colour, shape, template) for colour, shape in classes for template in CAPTION_TEMPLATES]
    tokens = processor.tokenizer(captions, padding=True, return_tensors="pt")

    # One thread: these tiny matrices gain nothing from more, a busy machine makes spinning threads
    # slow, and the trained weights then do not depend on the number of cores.
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _fit(model, pool_pixels, tokens, steps, batch_size, rng, progress, pool_per_class)
    finally:
        torch.set_num_threads(threads_before)
    model.eval()
    return _save(model, processor, Path(path))


def _fit(model, pool_pixels, tokens, steps: int, batch_size: int, rng: np.random.Generator,
         progress: Callable[[int, float], None] | None, pool_per_class: int = _POOL_PER_CLASS) -> None:
    import torch

    classes = shape_classes()
    optimiser = torch.optim.AdamW(model.parameters(), lr=_LEARNING_RATE, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=_LEARNING_RATE, total_steps=steps,
                                                   pct_start=0.1)
    model.train()
    for step in range(steps):
        labels = np.arange(batch_size) % len(classes)
        image_rows = labels + len(classes) * rng.integers(pool_per_class, size=batch_size)
        caption_rows = labels * len(CAPTION_TEMPLATES) + rng.integers(len(CAPTION_TEMPLATES), size=batch_size)
        image_vectors = model.get_image_features(pixel_values=pool_pixels[image_rows]).pooler_output
        text_vectors = model.get_text_features(input_ids=tokens["input_ids"][caption_rows],
                                               attention_mask=tokens["attention_mask"][caption_rows]).pooler_output
        logits = model.logit_scale.exp() * (torch.nn.functional.normalize(image_vectors, dim=-1)
                                            @ torch.nn.functional.normalize(text_vectors, dim=-1).T)
        same_class = torch.from_numpy(labels[:, None] == labels[None, :]).float()
        targets = same_class / same_class.sum(dim=1, keepdim=True)
        loss = (_soft_cross_entropy(logits, targets) + _soft_cross_entropy(logits.T, targets)) / 2
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        with torch.no_grad():  # CLIP's cap on the temperature
            model.logit_scale.clamp_(0, math.log(100))
        if progress is not None:
            progress(step, float(loss.detach()))


def _soft_cross_entropy(logits, targets):
    return -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()


# Detection models for the region detector (harvest/region_detector.py). Random weights: their
# boxes mean nothing, they only carry the path from from_pretrained to region rows.

DETECTOR_IMAGE_SIZE = 64
_PATCH = 16  # OWL-ViT: one box per patch, (64 / 16)^2 = 16 boxes per image
DETECTOR_GRID = DETECTOR_IMAGE_SIZE // _PATCH


def build_random_owlvit(path: str | Path, seed: int = 0, version: int = 1) -> Path:
    """Save a tiny randomly initialised OWL-ViT (``version`` 1: OwlViTForObjectDetection, which
    squeezes the image into a square; 2: Owlv2ForObjectDetection, which pads it to one) with its
    processor under ``path``; one box per patch, a 4x4 grid.

    The box head's weights are drawn small (as a trained head's offsets are): at the default
    scale its random outputs saturate the sigmoid and every box collapses to a line, while the
    model's own prior (a box the size of a patch, centred on a corner of its patch) then shows
    through. The score's shift and scale are drawn small too, so that scores spread around 0.5
    (not 1e-14) and a threshold has something to cut.
    """
    import torch
    import transformers

    prefix = {1: "OwlViT", 2: "Owlv2"}[version]
    config_class, model_class, image_processor_class, processor_class = (
        getattr(transformers, prefix + suffix)
        for suffix in ("Config", "ForObjectDetection", "ImageProcessorPil", "Processor"))
    hidden = 32
    config = config_class(text_config=_text_tower(hidden, 1, 2, pad_id=0),
                          vision_config={**_vision_tower(hidden, 1, 2), "image_size": DETECTOR_IMAGE_SIZE,
                                         "patch_size": _PATCH},
                          projection_dim=hidden)  # the class head compares image and text at this width
    model = _seeded_model(model_class, config, seed)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for layer in (model.box_head.dense0, model.box_head.dense1, model.box_head.dense2,
                      model.class_head.logit_shift, model.class_head.logit_scale):
            layer.weight.normal_(0.0, 0.3 / hidden ** 0.5)
            layer.bias.zero_()
    square = {"height": DETECTOR_IMAGE_SIZE, "width": DETECTOR_IMAGE_SIZE}
    image_processor = (image_processor_class(size=square, crop_size=square) if version == 1
                       else image_processor_class(size=square))
    processor = processor_class(image_processor=image_processor, tokenizer=build_caption_tokenizer())
    return _save(model, processor, Path(path))


def build_random_yolos(path: str | Path, seed: int = 0, detection_tokens: int = 20) -> Path:
    """Save a tiny randomly initialised YolosForObjectDetection with its image processor under ``path``.

    The detection tokens start as zeros in transformers (a trained model has learnt them), and
    the heads' weights are drawn at a tiny scale, which makes every token predict the same box;
    here both are drawn at a unit scale so that boxes and scores differ.
    """
    import torch
    from transformers import YolosConfig, YolosForObjectDetection, YolosImageProcessorPil

    config = YolosConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         image_size=[DETECTOR_IMAGE_SIZE, DETECTOR_IMAGE_SIZE], patch_size=_PATCH,
                         num_detection_tokens=detection_tokens, num_labels=3, use_mid_position_embeddings=False,
                         id2label={0: "miniature", 1: "initial", 2: "diagram"},
                         label2id={"miniature": 0, "initial": 1, "diagram": 2})
    model = _seeded_model(YolosForObjectDetection, config, seed)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        model.vit.embeddings.detection_tokens.normal_(0.0, 1.0)
        for head in (model.bbox_predictor, model.class_labels_classifier):
            for layer in head.layers:
                layer.weight.normal_(0.0, 1.5 / layer.in_features ** 0.5)
    processor = YolosImageProcessorPil(size={"shortest_edge": DETECTOR_IMAGE_SIZE,
                                             "longest_edge": 2 * DETECTOR_IMAGE_SIZE})
    return _save(model, processor, Path(path))


def build_random_detr(path: str | Path, seed: int = 0, queries: int = 20) -> Path:
    """Save a tiny randomly initialised DetrForObjectDetection (a small ResNet from transformers as
    its backbone: no timm) with its image processor under ``path``: the path of a detector fed a
    pixel mask. Its heads are drawn at a unit scale as YOLOS's are, yet one decoder layer leaves
    its queries close to one box (merged into one or a few): enough to carry the path."""
    import torch
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessorPil, ResNetConfig

    backbone = ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16, 16, 32], depths=[1, 1, 1, 1],
                            layer_type="basic", out_features=["stage4"])
    config = DetrConfig(use_timm_backbone=False, backbone_config=backbone, use_pretrained_backbone=False, d_model=32,
                        encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                        encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=queries, num_labels=3)
    model = _seeded_model(DetrForObjectDetection, config, seed)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        model.model.query_position_embeddings.weight.normal_(0.0, 1.0)
        for layer in (*model.bbox_predictor.layers, model.class_labels_classifier):
            layer.weight.normal_(0.0, 1.5 / layer.in_features ** 0.5)
    processor = DetrImageProcessorPil(size={"shortest_edge": DETECTOR_IMAGE_SIZE,
                                            "longest_edge": 2 * DETECTOR_IMAGE_SIZE})
    return _save(model, processor, Path(path))
