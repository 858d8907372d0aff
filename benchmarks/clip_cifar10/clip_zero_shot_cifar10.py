"""Reproduce the paper's CIFAR-10 zero-shot CLIP number (98.5 mean AUROC, ViT-B/32) offline.

skood never downloads weights or data, and the machines this project runs on cannot, so this
script has not been run on the real data and no number is claimed (tests/test_clip.py runs it
end to end on a stand-in model and two fake CIFAR images). With files you downloaded
yourself:

* CIFAR-10, python version: the folder ``cifar-10-batches-py`` (with ``test_batch`` and
  ``batches.meta``) from https://www.cs.toronto.edu/~kriz/cifar.html;
* ViT-B/32 weights, either with open_clip (``--open-clip-checkpoint``, the openai ``.pt`` or
  ``.bin`` file; needs ``pip install open_clip_torch`` and a working torchvision), or with
  transformers (``--hf-dir``, a folder saved by ``CLIPModel.save_pretrained`` and
  ``CLIPProcessor.save_pretrained``; ``pip install 'skood[clip]'``).

.. code-block:: bash

   python benchmarks/clip_cifar10/clip_zero_shot_cifar10.py --cifar /data/cifar-10-batches-py --hf-dir /models/clip

One-vs-rest, as in the paper's Table 2: for each class c, the prompts are "a photo of a {c}" and
"a photo of something"; the 10,000 test images are scored and AUROC is computed with class c as
normal. The paper (Liznerski et al., TMLR 2022) reports 98.5 mean AUROC; CIFAR images stay
32 x 32 and are upsampled to the model's 224 px, which CLIPZeroShot's default preprocessing does.
"""

import argparse
import pickle
import sys
import time
from pathlib import Path

import numpy as np

from skood import CLIPZeroShot
from skood.metrics import auroc


def load_cifar_test(folder: Path):
    with open(folder / "test_batch", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    with open(folder / "batches.meta", "rb") as f:
        names = [n.decode() for n in pickle.load(f, encoding="bytes")[b"label_names"]]
    X = batch[b"data"].astype(np.float32) / 255.0  # (10000, 3072), channel-first rows
    return X, np.asarray(batch[b"labels"]), names


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cifar", type=Path, required=True)
    parser.add_argument("--hf-dir", type=Path)
    parser.add_argument("--open-clip-checkpoint", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N images")
    args = parser.parse_args()
    if not (args.cifar / "test_batch").is_file():
        sys.exit(f"No CIFAR-10 python batches in {args.cifar}: download them first.")
    if args.hf_dir is not None:
        backend = dict(encoder=str(args.hf_dir))
    elif args.open_clip_checkpoint is not None:
        backend = dict(encoder="ViT-B-32", checkpoint=str(args.open_clip_checkpoint))
    else:
        sys.exit("Give --hf-dir or --open-clip-checkpoint: the ViT-B/32 weights on disk.")
    X, y, names = load_cifar_test(args.cifar)
    if args.limit:
        X, y = X[: args.limit], y[: args.limit]
    # The image embeddings do not depend on the class: encode once, then score every one-vs-rest
    # task with the precomputed back-end.
    t = time.perf_counter()
    first = CLIPZeroShot([names[0]], image_shape=(3, 32, 32), device=args.device, **backend)
    feats = first.fit(X[:2]).image_features(X)
    print(f"encoded {len(X)} images in {time.perf_counter() - t:.0f} s")
    aucs = []
    for c, name in enumerate(names):
        det = CLIPZeroShot([name], image_shape=(3, 32, 32), device=args.device, **backend).fit(
            X[:2]
        )
        pre = CLIPZeroShot(precomputed=True, text_embeddings=det.text_features_).fit(feats[:2])
        aucs.append(auroc(np.where(y == c, 1, -1), pre.score_samples(feats)))
        print(f"{name:>12}: AUROC {100 * aucs[-1]:.1f}")
    print(f"mean AUROC {100 * np.mean(aucs):.1f} (paper: 98.5)")


if __name__ == "__main__":
    main()
