"""TorchvisionFeatures: wiring against a stand-in torchvision (runs everywhere), the real one where
it imports (not on the CPU-only machines here, whose torchvision wheel is a CUDA build), and the
error when it is missing."""

import enum
import pickle
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

from skood.vision import TorchvisionFeatures, _import_torchvision

# -- a stand-in for torchvision's model registry ------------------------------------------------


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(torch.relu(self.conv(x))), 1))


class Halve(nn.Module):
    """The stand-in 'model preprocessing': easy to recognise in the output."""

    def forward(self, x):
        return x / 2


class TinyNetWeights(enum.Enum):
    V1 = "v1"
    DEFAULT = "v1"  # an alias, as torchvision's enums have

    def transforms(self):
        return Halve()


@pytest.fixture
def fake_torchvision(monkeypatch):
    models = types.ModuleType("torchvision.models")
    models.list_models = lambda: ["tinynet"]
    models.get_model = lambda name, weights=None: TinyNet()
    models.get_model_weights = lambda name: TinyNetWeights
    tv = types.ModuleType("torchvision")
    tv.models = models
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)


@pytest.fixture
def images():
    return np.random.RandomState(0).rand(5, 3 * 8 * 8)


@pytest.fixture
def weights_file(tmp_path):
    torch.manual_seed(1)
    net = TinyNet()
    path = tmp_path / "tiny.pth"
    torch.save({"state_dict": net.state_dict()}, path)  # a checkpoint dict is unwrapped
    return net.eval(), path


def test_features_are_the_layer_of_the_loaded_model_after_its_preprocessing(
    fake_torchvision, images, weights_file
):
    net, path = weights_file
    ext = TorchvisionFeatures("tinynet", weights_path=path, image_shape=(3, 8, 8)).fit(images)
    with torch.no_grad():
        x = torch.tensor(images, dtype=torch.float32).reshape(-1, 3, 8, 8) / 2
        expected = net.avgpool(torch.relu(net.conv(x))).flatten(1).double().numpy()
    np.testing.assert_allclose(ext.transform(images), expected, rtol=1e-6)
    assert ext.get_feature_names_out().tolist() == [f"torchvisionfeatures{i}" for i in range(4)]
    restored = pickle.loads(pickle.dumps(ext))
    np.testing.assert_array_equal(restored.transform(images), ext.transform(images))
    logits = TorchvisionFeatures("tinynet", weights_path=path, layer=None, image_shape=(3, 8, 8))
    assert logits.fit_transform(images).shape == (5, 10)
    raw = TorchvisionFeatures(
        "tinynet", weights_path=path, image_shape=(3, 8, 8), preprocess=False
    ).fit(images)
    np.testing.assert_allclose(raw.transform(images / 2), expected, rtol=1e-6)


def test_skood_save_needs_the_stand_in_classes_trusted(
    fake_torchvision, images, weights_file, tmp_path
):
    import skood
    from skood.io import UntrustedTypesError

    _, path = weights_file
    ext = TorchvisionFeatures("tinynet", weights_path=path, image_shape=(3, 8, 8)).fit(images)
    skood.save(ext, tmp_path / "ext.skood")
    # the stand-in's classes live in this test module, not in torchvision: code to be trusted
    with pytest.raises(UntrustedTypesError, match="TinyNet"):
        skood.load(tmp_path / "ext.skood")
    loaded = skood.load(tmp_path / "ext.skood", trusted=[TinyNet, Halve])
    np.testing.assert_array_equal(loaded.transform(images), ext.transform(images))


def test_bad_configuration_is_named(fake_torchvision, images, weights_file, tmp_path):
    _, path = weights_file
    fit = lambda **kw: TorchvisionFeatures(  # noqa: E731
        **{"arch": "tinynet", "weights_path": path, "image_shape": (3, 8, 8), **kw}
    ).fit(images)
    with pytest.raises(ValueError, match="unknown torchvision architecture 'tiny'"):
        fit(arch="tiny")
    with pytest.raises(ValueError, match=r"no weights named 'V9'.*'V1'"):
        fit(weights="V9")
    with pytest.raises(FileNotFoundError, match="never downloads"):
        fit(weights_path=tmp_path / "missing.pth")
    torch.save(nn.Linear(2, 2).state_dict(), tmp_path / "other.pth")
    with pytest.raises(ValueError, match="do not fit tinynet"):
        fit(weights_path=tmp_path / "other.pth")
    with pytest.raises(ValueError, match="does not exist"):
        fit(layer="layer4")
    with pytest.raises(ValueError, match="image_shape"):
        fit(image_shape=(3, 16, 16))
    with pytest.raises(ValueError, match=r"\[0, 1\].*255"):
        fit().transform(images * 255)
    with pytest.warns(UserWarning, match="random initialisation"):
        fit(weights_path=None)


def test_missing_torchvision_says_how_to_install(monkeypatch, images):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import raises ImportError
    with pytest.raises(ImportError, match=r"skood\[vision\]"):
        TorchvisionFeatures(image_shape=(3, 8, 8)).fit(images)


def test_skood_imports_without_torchvision():
    code = "import sys; sys.modules['torchvision'] = None; import skood; print(skood.__all__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "TorchvisionFeatures" in out.stdout


# -- the real torchvision, where it imports ---------------------------------------------------


@pytest.fixture
def torchvision():
    try:
        return _import_torchvision("test")
    except ImportError as exc:
        pytest.skip(str(exc).split(". Install")[0])


def test_resnet18_from_a_local_file(torchvision, tmp_path):
    torch.manual_seed(0)
    net = torchvision.models.resnet18().eval()
    torch.save(net.state_dict(), tmp_path / "r18.pth")
    X = np.random.RandomState(0).rand(3, 3 * 32 * 32)
    ext = TorchvisionFeatures(weights_path=tmp_path / "r18.pth", image_shape=(3, 32, 32)).fit(X)
    with torch.no_grad():
        x = ext.preprocess_(torch.tensor(X, dtype=torch.float32).reshape(-1, 3, 32, 32))
        body = nn.Sequential(*list(net.children())[:-1])  # everything up to avgpool
        expected = body(x).flatten(1).double().numpy()
    np.testing.assert_allclose(ext.transform(X), expected, rtol=1e-5, atol=1e-6)
    assert ext.transform(X).shape == (3, 512)
    import skood

    skood.save(ext, tmp_path / "r18.skood")  # torchvision's models and transforms: no trust needed
    np.testing.assert_array_equal(skood.load(tmp_path / "r18.skood").transform(X), ext.transform(X))
