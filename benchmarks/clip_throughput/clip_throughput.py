"""CLIPZeroShot scoring throughput on CPU (and GPU when present), against the raw model forward.

No CLIP weights can be downloaded on these machines, so the model is a randomly initialised
transformers ``CLIPModel`` with ViT-B/32's vision shape but fewer layers (``--layers``, default 4
of 12): throughput, not accuracy. The AUROC of a *random* CLIP is meaningless and is not reported;
``benchmarks/clip_cifar10/clip_zero_shot_cifar10.py`` reproduces the paper's number with downloaded weights.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/clip_throughput/clip_throughput.py [--layers 4] [--device cpu]

Rows: images / s of (a) the raw ``get_image_features`` forward on already-preprocessed pixels,
(b) ``CLIPZeroShot.score_samples`` on flattened [0, 1] images that need resizing (32 -> 224)
and normalising, (c) the same with a 5-template prompt ensemble (costs only at fit), and
(d) the precomputed back-end on stored embeddings.
"""

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from skood import CLIPZeroShot

HERE = Path(__file__).resolve().parent
TEMPLATES = [
    "a photo of a {}",
    "a blurry photo of a {}",
    "a photo of the large {}",
    "a photo of the small {}",
    "a low resolution photo of a {}",
]
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def tiny_clip(layers):
    import tokenizers
    import transformers

    words = sorted({w for t in TEMPLATES for w in t.replace("{}", "").split()} | set(CLASSES))
    words = ["[PAD]", "[UNK]", *words, "something"]
    tok = tokenizers.Tokenizer(
        tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]")
    )
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        model_input_names=["input_ids", "attention_mask"],
    )
    torch.manual_seed(0)
    config = transformers.CLIPConfig(
        text_config=dict(
            vocab_size=len(words),
            num_hidden_layers=layers,
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=2,
            pad_token_id=0,
        ),
        vision_config=dict(image_size=224, patch_size=32, num_hidden_layers=layers),
        projection_dim=512,
    )
    return transformers.CLIPModel(config).eval(), fast


def rate(fn, n, repeat=3):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return n / min(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=256)
    args = parser.parse_args()
    model, tok = tiny_clip(args.layers)
    model = model.to(args.device)
    rng = np.random.RandomState(0)
    X = rng.uniform(size=(args.n, 3 * 32 * 32)).astype(np.float32)  # CIFAR-sized images
    det = CLIPZeroShot(
        ["cat"], encoder=model, tokenizer=tok, image_shape=(3, 32, 32), device=args.device
    ).fit(X[:2])
    pixels = det._pixels(torch.tensor(X, device=args.device).view(-1, 3, 32, 32))

    def raw():
        with torch.inference_mode():
            for i in range(0, args.n, det.inference_batch_size):
                model.get_image_features(pixel_values=pixels[i : i + det.inference_batch_size])

    t = time.perf_counter()
    ens = CLIPZeroShot(
        CLASSES[:9],
        encoder=model,
        tokenizer=tok,
        image_shape=(3, 32, 32),
        prompt_template=TEMPLATES,
        device=args.device,
    ).fit(X[:2])
    ens_fit = time.perf_counter() - t
    t = time.perf_counter()
    CLIPZeroShot(
        CLASSES[:9], encoder=model, tokenizer=tok, image_shape=(3, 32, 32), device=args.device
    ).fit(X[:2])
    one_fit = time.perf_counter() - t
    feats = det.image_features(X)
    pre = CLIPZeroShot(precomputed=True, text_embeddings=det.text_features_).fit(feats[:2])
    rows = {
        "raw get_image_features (preprocessed)": rate(raw, args.n),
        "CLIPZeroShot.score_samples (resize + normalise + encode)": rate(
            lambda: det.score_samples(X), args.n
        ),
        "CLIPZeroShot, 5-template ensemble, 9 classes": rate(lambda: ens.score_samples(X), args.n),
        "CLIPZeroShot(precomputed=True)": rate(lambda: pre.score_samples(feats), args.n),
    }
    n_params = sum(p.numel() for p in model.vision_model.parameters())
    lines = [
        "# CLIPZeroShot throughput",
        "",
        f"Command: `OMP_NUM_THREADS=2 .venv/bin/python benchmarks/clip_throughput/clip_throughput.py --layers "
        f"{args.layers} --device {args.device}`; {args.n} random 32x32 RGB images, batch 64, "
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads.",
        f"Model: random transformers CLIPModel, ViT-B/32 vision shape (224 px, patch 32, width "
        f"768) with {args.layers} of 12 layers ({n_params / 1e6:.1f} M vision parameters). "
        "Random weights: throughput only, no AUROC. Measured with another benchmark on the same "
        "2 cores, so absolute rates are low; the ratios are the point.",
        "",
        "| path | images / s |",
        "|---|---|",
        *[f"| {k} | {v:,.0f} |" for k, v in rows.items()],
        "",
        f"Fit (text encoding only): 9 classes x 1 template {one_fit:.2f} s, x 5 templates "
        f"{ens_fit:.2f} s; a prompt ensemble costs only at fit, scoring is the same matrix product.",
        "",
    ]
    out = HERE / f"clip_throughput_{args.device}.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    print(json.dumps({k: round(v, 1) for k, v in rows.items()}))


if __name__ == "__main__":
    main()
