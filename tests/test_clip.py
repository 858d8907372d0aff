"""CLIPZeroShot: the paper's softmax by hand, back-ends with tiny offline models, bad input."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import softmax
from sklearn.pipeline import Pipeline
from torch import nn

from skood import CLIPZeroShot, ImageFiles
from skood.clip import _Backend
from tests._helpers import StandInCLIP, assert_float32_close, hash_tokenizer

REPO = Path(__file__).resolve().parents[1]


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture
def text(rng):
    return rng.normal(size=(3, 6))  # two normal prompts, then the anomaly prompt


def test_score_is_the_hand_computed_softmax_mass_of_the_normal_prompts(rng, text):
    X = rng.normal(size=(20, 6))
    det = CLIPZeroShot(precomputed=True, text_embeddings=text).fit(X)
    p = softmax(100.0 * _unit(X) @ _unit(text).T, axis=1)
    np.testing.assert_allclose(det.score_samples(X), np.log(p[:, 0] + p[:, 1]), atol=1e-12)
    np.testing.assert_allclose(det.predict_proba_normal(X), p[:, 0] + p[:, 1], atol=1e-12)
    assert det.score_samples(X).dtype == np.float64 and np.all(det.score_samples(X) <= 0)
    np.testing.assert_allclose(det.text_features_, _unit(text))


def test_scores_do_not_depend_on_embedding_scale(rng, text):
    X = rng.normal(size=(20, 6))
    s = CLIPZeroShot(precomputed=True, text_embeddings=text).fit(X).score_samples(X)
    scaled = CLIPZeroShot(precomputed=True, text_embeddings=text * [[3.0], [0.1], [50.0]])
    scaled.fit(X)
    np.testing.assert_allclose(scaled.score_samples(X * rng.uniform(0.01, 100, (20, 1))), s)


def test_auto_threshold_is_p_normal_one_half():
    text = np.array([[1.0, 0.0], [0.0, 1.0]])  # one normal prompt, the anomaly prompt
    det = CLIPZeroShot(precomputed=True, text_embeddings=text).fit(np.eye(2))
    assert det.offset_ == pytest.approx(np.log(0.5))
    X = np.array([[1.0, 1.0], [1.0, 0.999], [0.999, 1.0]])  # on, inside, outside the boundary
    np.testing.assert_allclose(det.decision_function(X)[0], 0.0, atol=1e-12)
    np.testing.assert_array_equal(det.predict(X[1:]), [1, -1])


def test_float_contamination_is_a_quantile_of_the_fit_rows_without_outliers(rng, text):
    X = rng.normal(size=(50, 6))
    y = np.ones(50)
    y[:10] = -1
    det = CLIPZeroShot(precomputed=True, text_embeddings=text, contamination=0.2).fit(X, y)
    assert det.offset_ == pytest.approx(
        np.quantile(det.score_samples(X[10:]), 0.2, method="weibull")
    )


@pytest.mark.numerics
def test_open_clip_style_back_end_matches_a_hand_computation_and_batches(rng):
    model = StandInCLIP().eval()
    X = rng.uniform(size=(7, 64)).astype(np.float32)  # 1 x 8 x 8 grey images in [0, 1]
    tok = hash_tokenizer
    det = CLIPZeroShot(["cat", "dog"], encoder=model, tokenizer=tok, image_shape=(1, 8, 8))
    det.fit(X)
    assert det.prompts_ == ["a photo of a cat", "a photo of a dog", "a photo of something"]
    with torch.no_grad():
        t = model.encode_text(tok(det.prompts_)).double().numpy()
        img = torch.from_numpy(X).view(-1, 1, 8, 8).expand(-1, 3, -1, -1)
        mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
        std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
        f = model.encode_image((img - mean) / std).double().numpy()
    p = softmax(100.0 * _unit(f) @ _unit(t).T, axis=1)
    np.testing.assert_allclose(det.score_samples(X), np.log(p[:, :2].sum(1)), rtol=1e-5)
    one_by_one = det.set_params(inference_batch_size=1).score_samples(X)
    assert_float32_close(one_by_one, det.set_params(inference_batch_size=64).score_samples(X))
    # the embeddings can be stored and scored later by the precomputed back-end
    pre = CLIPZeroShot(precomputed=True, text_embeddings=det.text_features_)
    feats = det.image_features(X)
    assert_float32_close(pre.fit(feats).score_samples(feats), det.score_samples(X))
    again = pickle.loads(pickle.dumps(det))
    np.testing.assert_array_equal(again.score_samples(X), det.score_samples(X))


def test_prompt_ensemble_averages_normalised_template_embeddings(rng):
    model = StandInCLIP().eval()
    tok = hash_tokenizer
    templates = ["a photo of a {}", "a blurry photo of a {}"]
    det = CLIPZeroShot(
        ["cat"], encoder=model, tokenizer=tok, prompt_template=templates, image_shape=(1, 8, 8)
    ).fit(rng.uniform(size=(3, 64)))
    with torch.no_grad():
        e = _unit(model.encode_text(tok(["a photo of a cat", "a blurry photo of a cat"])).numpy())
    np.testing.assert_allclose(det.text_features_[0], _unit(e.mean(0)), rtol=1e-5)
    assert det.prompts_[0] == ["a photo of a cat", "a blurry photo of a cat"]


def _tiny_transformers_clip():
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    words = ["[PAD]", "[UNK]", "a", "photo", "of", "something", "cat", "dog"]
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
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=16,
            bos_token_id=0,
            eos_token_id=2,
            pad_token_id=0,
        ),
        vision_config=dict(
            image_size=16,
            patch_size=8,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
        ),
        projection_dim=8,
    )
    return transformers.CLIPModel(config).eval(), fast


def test_transformers_back_end_from_an_object_and_from_a_local_directory(rng, tmp_path):
    model, tok = _tiny_transformers_clip()
    X = rng.uniform(size=(5, 3 * 12 * 12)).astype(np.float32)  # resized to the model's 16 px
    det = CLIPZeroShot(["cat", "dog"], encoder=model, tokenizer=tok, image_shape=(3, 12, 12))
    s = det.fit(X).score_samples(X)
    with torch.no_grad():
        ids = tok(det.prompts_, padding=True, return_tensors="pt")
        t = _Backend._tensor(model.get_text_features(**ids)).double().numpy()
    np.testing.assert_allclose(det.text_features_, _unit(t), rtol=1e-5)
    assert s.shape == (5,) and np.all(np.isfinite(s)) and np.all(s <= 0)
    np.testing.assert_allclose(
        det.set_params(inference_batch_size=1).score_samples(X), s, rtol=1e-5
    )
    processor = type("Processor", (), {"tokenizer": tok, "__call__": lambda self, *a, **k: 1 / 0})()
    det_p = CLIPZeroShot(
        ["cat", "dog"], encoder=model, tokenizer=processor, image_shape=(3, 12, 12)
    )
    np.testing.assert_allclose(det_p.fit(X).score_samples(X), s, rtol=1e-6)  # its text half
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    local = CLIPZeroShot(["cat", "dog"], encoder=str(tmp_path), image_shape=(3, 12, 12)).fit(X)
    np.testing.assert_allclose(local.score_samples(X), s, rtol=1e-5)


def test_image_files_step_feeds_the_detector_in_a_pipeline(tmp_path, rng):
    from PIL import Image

    paths = []
    for i in range(3):
        path = tmp_path / f"img{i}.png"
        Image.fromarray((rng.uniform(size=(10, 14, 3)) * 255).astype(np.uint8)).save(path)
        paths.append(str(path))
    rows = ImageFiles(8).fit_transform(paths)
    assert rows.shape == (3, 3 * 8 * 8) and rows.dtype == np.float32
    assert 0 <= rows.min() and rows.max() <= 1
    pipe = Pipeline(
        [
            ("load", ImageFiles(8)),
            (
                "clip",
                CLIPZeroShot(
                    ["cat"],
                    encoder=StandInCLIP().eval(),
                    image_shape=(3, 8, 8),
                    tokenizer=lambda t: torch.zeros(len(t), 2, dtype=torch.long),
                ),
            ),
        ]
    )
    assert pipe.fit(paths).predict(paths).shape == (3,)
    with pytest.raises(FileNotFoundError, match="no image file"):
        ImageFiles(8).fit_transform([str(tmp_path / "missing.png")])
    with pytest.raises(TypeError, match="file paths or PIL images"):
        ImageFiles(8).fit_transform([np.zeros((8, 8))])


def test_bad_input_and_missing_back_ends_give_clear_errors(rng, text, tmp_path):
    X = rng.normal(size=(4, 6))
    with pytest.raises(ValueError, match="width 6 but X has 5 feature"):
        CLIPZeroShot(precomputed=True, text_embeddings=text).fit(X[:, :5])
    with pytest.raises(ValueError, match="needs text_embeddings"):
        CLIPZeroShot(precomputed=True).fit(X)
    with pytest.raises(ValueError, match="3 class_names but 2 normal"):
        CLIPZeroShot(["a", "b", "c"], precomputed=True, text_embeddings=text).fit(X)
    det = CLIPZeroShot(precomputed=True, text_embeddings=text).fit(X)
    with pytest.raises(ValueError, match="6 features"):
        det.score_samples(X[:, :4])
    with pytest.raises(ValueError, match="NaN"):
        det.score_samples(np.full((1, 6), np.nan))
    with pytest.raises(ValueError, match="class_names must be a non-empty list"):
        CLIPZeroShot(encoder=StandInCLIP(), image_shape=(1, 8, 8)).fit(rng.uniform(size=(2, 64)))
    with pytest.raises(ValueError, match="pass encoder="):
        CLIPZeroShot(["cat"], image_shape=(1, 8, 8)).fit(rng.uniform(size=(2, 64)))
    with pytest.raises(TypeError, match="is not a CLIP model"):
        CLIPZeroShot(["cat"], encoder=nn.Linear(2, 2), tokenizer=str, image_shape=(1, 8, 8)).fit(
            rng.uniform(size=(2, 64))
        )
    with pytest.raises(ValueError, match="image_shape=\\(1, 8, 8\\) holds 64"):
        CLIPZeroShot(["cat"], encoder=StandInCLIP(), tokenizer=str, image_shape=(1, 8, 8)).fit(X)
    with pytest.raises(ValueError, match="needs a '\\{\\}'"):
        CLIPZeroShot(
            ["cat"],
            encoder=StandInCLIP(),
            tokenizer=str,
            image_shape=(1, 8, 8),
            prompt_template="a photo",
        ).fit(rng.uniform(size=(2, 64)))
    with pytest.raises(ValueError, match="Nothing can be downloaded"):
        CLIPZeroShot(["cat"], encoder="ViT-B-32", image_shape=(1, 8, 8)).fit(
            rng.uniform(size=(2, 64))
        )
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"")
    try:
        import open_clip  # noqa: F401
    except Exception:  # not installed, or torchvision does not import: the clear error
        with pytest.raises(ImportError, match="pip install 'open_clip_torch'"):
            CLIPZeroShot(
                ["cat"], encoder="ViT-B-32", checkpoint=str(weights), image_shape=(1, 8, 8)
            ).fit(rng.uniform(size=(2, 64)))


def test_cifar10_example_runs_offline_on_files_in_its_format(tmp_path, rng):
    import subprocess
    import sys

    model, tok = _tiny_transformers_clip()
    model.save_pretrained(tmp_path / "clip")
    tok.save_pretrained(tmp_path / "clip")
    cifar = tmp_path / "cifar-10-batches-py"
    cifar.mkdir()
    data = (rng.uniform(size=(40, 3072)) * 255).astype(np.uint8)
    with open(cifar / "test_batch", "wb") as f:
        pickle.dump({b"data": data, b"labels": list(rng.randint(0, 2, 40))}, f)
    with open(cifar / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"cat", b"dog"]}, f)
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "clip_cifar10" / "clip_zero_shot_cifar10.py"),
            "--cifar",
            str(cifar),
            "--hf-dir",
            str(tmp_path / "clip"),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    assert "cat: AUROC" in out and "mean AUROC" in out
