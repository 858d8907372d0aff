"""skood.save / skood.load: every estimator round-trips exactly; hostile and damaged files fail
with a clear error and run nothing; tensors move between devices; versions are checked."""

import io
import json
import os
import pickle
import threading
import warnings
import zipfile

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.decomposition import PCA
from sklearn.feature_selection import VarianceThreshold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skood
from skood import GaussianMahalanobis, QuantileFlowDetector, TorchFeatures, VAEDetector
from skood.io import ModelFileError, UntrustedTypesError, VersionWarning, get_untrusted_types
from tests._settings import TINY_FLOW, VAE_CHECKS
from tests.test_estimator_checks import ESTIMATORS

# Everything a fitted model answers with; each is compared bit for bit after loading.
_OUTPUTS = (
    "score_samples",
    "decision_function",
    "predict",
    "predict_proba",
    "predict_closed_set",
    "transform",
)


def _data(estimator):
    """Inliers of 3 classes and auxiliary outliers (y == -1): every estimator takes both."""
    width = 4
    if getattr(estimator, "text_embeddings", None) is not None:
        width = np.asarray(estimator.text_embeddings).shape[1]
    X, y = make_blobs(120, n_features=width, centers=3, random_state=0)
    outliers = np.random.default_rng(0).normal(6.0, 1.0, size=(30, width))
    return np.vstack([X, outliers]), np.r_[y, -np.ones(30, dtype=int)]


def _fitted(estimator):
    from sklearn.base import clone

    X, y = _data(estimator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return clone(estimator).fit(X, y), X


def _round_trip(model, tmp_path, **load_options):
    path = tmp_path / "model.skood"
    skood.save(model, path)
    with zipfile.ZipFile(path) as archive:  # a zip of JSON and safetensors: no pickle anywhere
        assert not any(name.endswith((".pkl", ".pickle", ".joblib")) for name in archive.namelist())
    return skood.load(path, **load_options)


def _assert_same_answers(model, loaded, X):
    answered = 0
    for method in _OUTPUTS:
        if hasattr(model, method):
            np.testing.assert_array_equal(getattr(loaded, method)(X), getattr(model, method)(X))
            answered += 1
    assert answered


def _assert_same_attributes(model, loaded):
    assert type(loaded) is type(model)
    assert set(vars(loaded)) == set(vars(model))
    for name, value in vars(model).items():
        restored = getattr(loaded, name)
        assert type(restored) is type(value), name
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(restored, value)
            assert restored.dtype == value.dtype
        elif isinstance(value, (int, float, str, tuple)) and not isinstance(value, bool):
            assert restored == value or (value != value and restored != restored), name


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_every_estimator_round_trips_exactly(estimator, tmp_path):
    model, X = _fitted(estimator)
    loaded = _round_trip(model, tmp_path)
    _assert_same_answers(model, loaded, X)
    _assert_same_attributes(model, loaded)
    assert loaded.get_params(deep=False).keys() == model.get_params(deep=False).keys()
    # the loaded model is an ordinary estimator again: it pickles and refits
    method = next(m for m in _OUTPUTS if hasattr(model, m))
    again = getattr(pickle.loads(pickle.dumps(loaded)), method)(X)
    np.testing.assert_array_equal(again, getattr(model, method)(X))


def test_a_pipeline_keeps_sklearn_parts_in_skops_and_refits(tmp_path):
    X, _ = _data(None)
    flow = QuantileFlowDetector(**TINY_FLOW, random_state=0)
    pipe = make_pipeline(StandardScaler(), VarianceThreshold(), PCA(3, random_state=0), flow)
    pipe.fit(X)
    loaded = _round_trip(pipe, tmp_path)
    _assert_same_answers(pipe, loaded, X)
    with zipfile.ZipFile(tmp_path / "model.skood") as archive:
        assert sum(n.startswith("skops/") for n in archive.namelist()) == 3
    assert [type(s) for s in loaded] == [type(s) for s in pipe]
    assert len(loaded[-1].net_.history) == len(pipe[-1].net_.history)  # the training log too
    loaded.fit(X)  # same parameters, same seed: the same model again
    np.testing.assert_array_equal(loaded.score_samples(X), pipe.score_samples(X))


def test_rose_around_a_flow_keeps_its_estimator_and_curvatures(tmp_path):
    from skood import ROSEScorer

    model, X = _fitted(ROSEScorer(QuantileFlowDetector(**TINY_FLOW, random_state=0)))
    loaded = _round_trip(model, tmp_path)
    _assert_same_answers(model, loaded, X)
    _assert_same_attributes(model.estimator_, loaded.estimator_)
    for mine, theirs in zip(model.curvatures_, loaded.curvatures_):
        for name, value in vars(mine).items():
            if isinstance(value, torch.Tensor):  # LAPACK's column-major eigenvectors stay so
                assert torch.equal(getattr(theirs, name), value)
                assert getattr(theirs, name).stride() == value.stride()


def test_shared_objects_stay_shared(tmp_path):
    from skood import ClassifierFeatures

    model, _ = _fitted(ClassifierFeatures(hidden_sizes=(8,), max_epochs=2, random_state=0))
    loaded = _round_trip(model, tmp_path)
    assert loaded.module_ is loaded.net_.module_


def test_save_writes_atomically_and_plain_containers_work(tmp_path):
    X, _ = _data(None)
    gauss = GaussianMahalanobis(random_state=0).fit(X)
    path = tmp_path / "m.skood"
    path.write_bytes(b"an older model")

    class Unsaveable:
        pass

    with pytest.raises(TypeError, match="cannot be found again by its name"):
        skood.save({"model": gauss, "extra": Unsaveable}, path)
    assert path.read_bytes() == b"an older model"  # a failed save leaves the old file alone
    assert [p.name for p in tmp_path.iterdir()] == ["m.skood"]  # and no temporary file
    skood.save({"model": gauss, "columns": ["a", "b"], "n": 3, "w": (1.5, float("nan"))}, path)
    loaded = skood.load(path)
    assert loaded["columns"] == ["a", "b"] and loaded["n"] == 3
    assert loaded["w"][0] == 1.5 and np.isnan(loaded["w"][1])
    np.testing.assert_array_equal(loaded["model"].score_samples(X), gauss.score_samples(X))


# -- user code: refused until trusted ------------------------------------------------------------


class UserNet(torch.nn.Module):
    """A network a user wrote: its class is code, which a file cannot hold."""

    def __init__(self, n_in=4, n_out=3):
        super().__init__()
        self.body = torch.nn.Linear(n_in, n_out)
        self.activation = torch.nn.functional.relu

    def forward(self, x):
        return self.activation(self.body(x))


@pytest.mark.parametrize("module", [UserNet(), UserNet], ids=["instance", "class"])
def test_a_user_module_loads_only_when_trusted(module, tmp_path):
    model, X = _fitted(TorchFeatures(module, random_state=0))
    path = tmp_path / "m.skood"
    skood.save(model, path)
    assert get_untrusted_types(path) == ["tests.test_io.UserNet"]  # relu is torch's: trusted
    with pytest.raises(UntrustedTypesError, match=r"tests\.test_io\.UserNet.*trusted=") as info:
        skood.load(path)
    assert info.value.types == ["tests.test_io.UserNet"]
    assert "tests.test_io.UserNet is code from outside skood, torch and scikit-learn" in str(
        info.value
    )
    for trusted in (["tests.test_io.UserNet"], [UserNet]):  # by name, or re-supplied
        loaded = skood.load(path, trusted=trusted)
        np.testing.assert_array_equal(loaded.transform(X), model.transform(X))


def test_things_a_file_cannot_hold_are_refused_when_saving(tmp_path):
    X, _ = _data(None)
    model = TorchFeatures(torch.nn.Linear(4, 2), random_state=0).fit(X)
    model.module_.register_forward_hook(lambda *args: None)
    with pytest.raises(TypeError, match="hooks registered"):
        skood.save(model, tmp_path / "m.skood")
    factory = TorchFeatures(lambda: torch.nn.Linear(4, 2), random_state=0).fit(X)
    with pytest.raises(TypeError, match="lambda"):
        skood.save(factory, tmp_path / "m.skood")
    from skood import CLIPZeroShot

    clip = CLIPZeroShot(encoder=object(), class_names=["x"], image_shape=(1, 2, 2))
    with pytest.raises(TypeError, match="does not hold"):
        skood.save(clip, tmp_path / "m.skood")
    assert not (tmp_path / "m.skood").exists()


def test_an_sklearn_part_with_unsafe_types_needs_trust(tmp_path):
    from sklearn.ensemble import IsolationForest

    X, _ = _data(None)
    forest = make_pipeline(StandardScaler(), IsolationForest(n_estimators=5, random_state=0))
    skood.save(forest.fit(X), tmp_path / "m.skood")
    assert get_untrusted_types(tmp_path / "m.skood") == ["sklearn.tree._tree.Tree"]
    with pytest.raises(UntrustedTypesError, match=r"sklearn.tree._tree.Tree") as refused:
        skood.load(tmp_path / "m.skood")
    # It is scikit-learn's own (compiled) class: the message says so, not "outside scikit-learn"
    # (issue 34).
    message = str(refused.value)
    assert "sklearn.tree._tree.Tree is scikit-learn's, but not among the classes rebuilt" in message
    assert "outside" not in message
    loaded = skood.load(tmp_path / "m.skood", trusted=["sklearn.tree._tree.Tree"])
    np.testing.assert_array_equal(loaded.score_samples(X), forest.score_samples(X))


# -- hostile and damaged files: a clear error, nothing executed ----------------------------------


@pytest.fixture
def saved(tmp_path):
    X, _ = _data(None)
    model = VAEDetector(**VAE_CHECKS).fit(X)
    path = tmp_path / "m.skood"
    skood.save(model, path)
    return path


def _members(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _rewrite(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _edit_json(path, edit):
    members = _members(path)
    header = json.loads(members["skood.json"])
    edit(header)
    members["skood.json"] = json.dumps(header)
    _rewrite(path, members)


def test_a_pickle_renamed_to_skood_is_refused_unread(tmp_path):
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))  # creating a file on load = code execution

    path = tmp_path / "evil.skood"
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ModelFileError, match=r"is a pickle.*nothing in it was run.*skood convert"):
        skood.load(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "node",
    [
        {"type": "object", "class": "os.system", "state": {}},
        {"type": "function", "name": "builtins.eval"},
        {"type": "function", "name": "os.system"},
        {"type": "class", "name": "subprocess.Popen"},
        {"type": "module", "class": "builtins.eval", "state": {}},
        {"type": "skorch", "class": "os.system", "module": None, "criterion": None},
        # a name skood's own module happens to import is not followed to its target
        {"type": "object", "class": "skood.cli.sys.exit", "state": {}},
        {"type": "class", "name": "skood.torch.np.lib.format.read_array"},
    ],
    ids=lambda n: n.get("class", n.get("name")),
)
def test_a_file_naming_arbitrary_code_is_refused(saved, tmp_path, node):
    marker = tmp_path / "code-ran"
    root_state = {"type": "dict", "items": {"cmd": f"touch {marker}", "x": node}}

    def edit(header):
        header["root"]["state"]["callbacks"] = {"type": "list", "items": [root_state, node]}

    _edit_json(saved, edit)
    with pytest.raises(ModelFileError, match=r"does not rebuild|not a class here"):
        skood.load(saved)
    assert not marker.exists()


def test_unknown_node_types_and_malformed_trees_are_errors(saved):
    for bad in ({"type": "__import__"}, {"type": "eval", "source": "1"}, [1, 2], {"no": "type"}):
        members = _members(saved)
        header = json.loads(members["skood.json"])
        header["root"]["state"]["callbacks"] = bad
        path = saved.with_name("bad.skood")
        _rewrite(path, {**members, "skood.json": json.dumps(header)})
        with pytest.raises(ModelFileError):
            skood.load(path)
    deep = saved.with_name("deep.skood")
    nested = '{"type": "list", "items": [' * 100_000 + "]}" * 100_000
    members = _members(saved)
    _rewrite(
        deep,
        {
            **members,
            "skood.json": members["skood.json"].replace(
                b'"root"', b'"x": ' + nested.encode() + b', "root"', 1
            ),
        },
    )
    with pytest.raises(ModelFileError):
        skood.load(deep)


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.99])
def test_a_truncated_file_is_an_error(saved, cut):
    data = saved.read_bytes()
    saved.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ModelFileError):
        skood.load(saved)


def test_bit_flips_anywhere_are_errors_or_harmless(saved):
    data = saved.read_bytes()
    for position in np.random.default_rng(0).integers(0, len(data), 40):
        flipped = bytearray(data)
        flipped[position] ^= 0x10
        saved.write_bytes(bytes(flipped))
        try:  # a flip in the zip's slack (a comment, padding) may change nothing
            skood.load(saved)
        except ModelFileError:
            pass


def test_missing_extra_and_misshapen_tensors_are_errors(saved):
    from safetensors.torch import load as read
    from safetensors.torch import save as write

    original = _members(saved)
    tensors = read(original["tensors.safetensors"])
    first = sorted(tensors)[0]
    cases = {
        "missing": {k: v for k, v in tensors.items() if k != first},
        "extra": {**tensors, "t999": torch.zeros(2)},
        "wrong shape": {**tensors, first: torch.zeros(tensors[first].numel() + 1)},
        "wrong dtype": {**tensors, first: tensors[first].double()},
    }
    messages = {
        "missing": "missing",
        "extra": "no part of the model uses",
        "wrong shape": "expects",
        "wrong dtype": "expects",
    }
    for case, replaced in cases.items():
        _rewrite(saved, {**original, "tensors.safetensors": write(replaced)})
        with pytest.raises(ModelFileError, match=messages[case]):
            skood.load(saved)
    _rewrite(saved, {**original, "tensors.safetensors": b"\xff" * 64})
    with pytest.raises(ModelFileError, match="damaged"):
        skood.load(saved)
    _rewrite(saved, {**original, "payload.pkl": pickle.dumps(1)})
    with pytest.raises(ModelFileError, match="not a skood model file"):
        skood.load(saved)


def test_newer_formats_are_refused_and_other_versions_warn(saved):
    original = saved.read_bytes()
    _edit_json(saved, lambda h: h.update(format_version=99))
    with pytest.raises(ModelFileError, match=r"format version 99.*upgrade skood"):
        skood.load(saved)
    saved.write_bytes(original)
    _edit_json(saved, lambda h: h["versions"].update(torch="1.0.0", skood="0.1.0"))
    with pytest.warns(VersionWarning, match=r"skood 0\.1\.0 \(now .*torch 1\.0\.0"):
        skood.load(saved)
    saved.write_bytes(original)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same versions: silent
        skood.load(saved)
    header = json.loads(_members(saved)["skood.json"])
    assert {"skood", "torch", "sklearn", "skorch", "numpy"} <= set(header["versions"])


# -- devices -------------------------------------------------------------------------------------


def test_tensors_saved_on_cuda_load_on_a_cpu_machine(saved, monkeypatch):
    """A GPU-trained model on a CPU-only server: the file's devices say cuda, the machine has none."""
    X, _ = _data(None)
    reference = skood.load(saved).score_samples(X)

    def on_cuda(node):
        if isinstance(node, dict):
            if node.get("type") == "tensor":
                node["device"] = "cuda:0"
            if node.get("type") == "object" and "device_" in node.get("state", {}):
                node["state"]["device_"] = "cuda"
            for value in node.values():
                on_cuda(value)
        elif isinstance(node, list):
            for value in node:
                on_cuda(value)

    _edit_json(saved, lambda h: on_cuda(h["root"]))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match=r"saved on \['cuda', 'cuda:0'\].*loaded on the CPU"):
        loaded = skood.load(saved)
    assert loaded.device_ == "cpu" and loaded.net_.device == "cpu"
    assert all(p.device.type == "cpu" for p in loaded.net_.module_.parameters())
    np.testing.assert_array_equal(loaded.score_samples(X), reference)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an explicit device: no warning
        skood.load(saved, device="cpu")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_a_device_this_machine_lacks_is_a_device_error_not_a_file_error(saved, monkeypatch):
    """device="mps" without MPS blamed the file ("holds values that do not make a valid
    model", issue 34): it is the argument that is wrong, said before the file is read."""
    with pytest.raises(ValueError, match=r"device='mps' is not available on this machine") as info:
        skood.load(saved, device="mps")
    assert not isinstance(info.value, ModelFileError)
    assert "torch sees: cpu" in str(info.value) and "Use device='cpu' or 'auto'" in str(info.value)
    with pytest.raises(ValueError, match="device='mps' is not available"):
        skood.load(saved.parent / "no such file.skood", device="mps")  # not FileNotFoundError
    # A GPU index beyond those present, on a machine with one GPU.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"device='cuda:1' .*torch sees: cpu, cuda:0\)"):
        skood.load(saved, device="cuda:1")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_model_loads_on_cpu_and_back(tmp_path):
    X, _ = _data(None)
    model = QuantileFlowDetector(**TINY_FLOW, device="cuda", random_state=0).fit(X)
    skood.save(model, tmp_path / "m.skood")
    same = skood.load(tmp_path / "m.skood")
    np.testing.assert_array_equal(same.score_samples(X), model.score_samples(X))
    on_cpu = skood.load(tmp_path / "m.skood", device="cpu")
    assert on_cpu.device_ == "cpu"
    assert all(p.device.type == "cpu" for p in on_cpu.net_.module_.parameters())
    np.testing.assert_allclose(on_cpu.score_samples(X), model.score_samples(X), rtol=1e-4)
    skood.save(on_cpu, tmp_path / "cpu.skood")
    back = skood.load(tmp_path / "cpu.skood", device="cuda")
    assert next(back.net_.module_.parameters()).is_cuda
    np.testing.assert_allclose(back.score_samples(X), model.score_samples(X), rtol=1e-4)


def test_file_objects_work_too():
    X, _ = _data(None)
    model = GaussianMahalanobis(random_state=0).fit(X)
    buffer = io.BytesIO()
    skood.save(model, buffer)
    np.testing.assert_array_equal(
        skood.load(io.BytesIO(buffer.getvalue())).score_samples(X), model.score_samples(X)
    )


def test_a_pipeline_from_image_files(tmp_path):
    from PIL import Image

    from skood import ImageFiles

    rng = np.random.default_rng(0)
    paths = []
    for i in range(30):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (6, 6), dtype=np.uint8)).save(path)
        paths.append(str(path))
    pipe = make_pipeline(ImageFiles(4, mode="L"), GaussianMahalanobis(random_state=0)).fit(paths)
    loaded = _round_trip(pipe, tmp_path)
    np.testing.assert_array_equal(loaded.score_samples(paths), pipe.score_samples(paths))
    assert loaded[0].image_shape_ == (1, 4, 4)


def _find(node, kind):
    """The first node of a type in a saved tree (depth first)."""
    if isinstance(node, dict):
        if node.get("type") == kind:
            return node
        values = node.values()
    elif isinstance(node, list):
        values = node
    else:
        return None
    for value in values:
        found = _find(value, kind)
        if found is not None:
            return found
    return None


@pytest.mark.parametrize(
    "params",
    [
        # torch.compile with Inductor options: the first forward would run a compiler it names
        {
            "compile": True,
            "compile__options": {
                "type": "dict",
                "items": {"cpp.cxx": {"type": "list", "items": ["/tmp/evil.sh"]}},
            },
        },
        {"callbacks": {"type": "list", "items": []}},
        {"torch_load_kwargs": {"type": "dict", "items": {"weights_only": False}}},
        {"module__in_features": 100_000, "module__out_features": 100_000},  # 40 GB at load
        {"iterator_valid": {"type": "class", "name": "torch.nn.modules.linear.Identity"}},
    ],
    ids=["compile", "callbacks", "torch_load_kwargs", "module_sizes", "iterator"],
)
def test_a_skorch_net_takes_only_plain_settings_from_a_file(saved, params):
    def edit(header):
        _find(header["root"], "skorch")["params"].update(params)

    _edit_json(saved, edit)
    with pytest.raises(ModelFileError, match="may not set"):
        skood.load(saved)


@pytest.mark.parametrize("key", ["forward", "_forward_hooks", "_forward_pre_hooks"])
def test_a_module_cannot_be_given_functions_to_call(saved, key):
    def edit(header):
        hook = {"type": "function", "name": "torch.nn.functional.relu"}
        _find(header["root"], "module")["state"][key] = hook

    _edit_json(saved, edit)
    with pytest.raises(ModelFileError, match="may not set"):
        skood.load(saved)


def test_small_files_cannot_claim_huge_memory(saved):
    members = _members(saved)
    bomb = json.dumps({"format": "skood-model", "pad": " " * 50_000_000}).encode()
    path = saved.with_name("bomb.skood")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("skood.json", bomb, zipfile.ZIP_DEFLATED)  # 50 MB from about 50 kB
        for name in ("tensors.safetensors", "arrays.safetensors"):
            archive.writestr(name, members[name])
    with pytest.raises(ModelFileError, match="does not compress like that"):
        skood.load(path)

    def wide_strings(header):
        huge = {"type": "ndarray", "dtype": "<U50000000", "shape": [2], "values": ["a", "b"]}
        header["root"]["state"]["callbacks"] = huge  # 400 MB from a few bytes

    _edit_json(saved, wide_strings)
    with pytest.raises(ModelFileError, match="string array"):
        skood.load(saved)


def _nodes(node, kind):
    """Every node of a type in a saved tree."""
    if isinstance(node, dict):
        found = [node] if node.get("type") == kind else []
        return found + [n for value in node.values() for n in _nodes(value, kind)]
    if isinstance(node, list):
        return [n for value in node for n in _nodes(value, kind)]
    return []


_SIGMOID = {"type": "function", "name": "torch.nn.functional.sigmoid"}  # trusted: torch's own


# -- a file sets only what a fitted object of its class holds -------------------------------------


@pytest.mark.parametrize(
    "key", ["_call_impl", "_compiled_call_impl", "_slow_forward", "_apply", "extra_repr"]
)
def test_a_module_cannot_be_given_code_in_place_of_its_own(saved, key):
    """8c543f1 loaded these: set to sigmoid on the VAE's ReLU layers, ``_call_impl`` (or
    ``_compiled_call_impl``) ran sigmoid in place of ReLU, and the scores changed silently."""

    def edit(header):
        relus = [n for n in _nodes(header["root"], "module") if n["class"].endswith(".ReLU")]
        assert relus
        for node in relus:
            node["state"][key] = _SIGMOID

    _edit_json(saved, edit)
    assert get_untrusted_types(saved) == []  # a trusted function: not a question of trust
    with pytest.raises(ModelFileError, match=rf"its ReLU \(torch\.nn.*\) may not set '{key}'"):
        skood.load(saved)


@pytest.mark.parametrize(
    "state",
    [
        {"_modules": {"type": "dict", "items": {"0": _SIGMOID}}},  # a function as a layer
        {"_parameters": {"type": "dict", "items": {"w": {"type": "float", "value": "nan"}}}},
        {"training": "yes"},
    ],
    ids=["function-layer", "float-parameter", "training"],
)
def test_a_modules_registered_state_is_of_torchs_types(saved, state):
    def edit(header):
        node = next(
            n for n in _nodes(header["root"], "module") if n["class"].endswith("Sequential")
        )
        key = next(iter(state))
        if key == "training":
            node["state"].update(state)
        else:
            node["state"][key]["items"].update(state[key]["items"])

    _edit_json(saved, edit)
    with pytest.raises(
        ModelFileError, match=rf"its Sequential .* may not set '{next(iter(state))}'"
    ):
        skood.load(saved)


def test_a_plain_attribute_cannot_hide_a_registered_layer(saved):
    """Attribute lookup finds an instance's own attribute before torch's registered layers."""

    def edit(header):
        vae = next(n for n in _nodes(header["root"], "module") if n["class"].endswith(".VAE"))
        assert "encoder" in vae["state"]["_modules"]["items"]
        vae["state"]["encoder"] = _SIGMOID  # VAE.encode would call sigmoid on its input

    _edit_json(saved, edit)
    with pytest.raises(ModelFileError, match=r"its VAE .* may not set 'encoder' \(it would hide"):
        skood.load(saved)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("predict", _SIGMOID),  # shadows the method: the file's function would answer
        ("score_samples", _SIGMOID),
        ("_parameter_constraints", {"type": "dict", "items": {}}),  # would turn validation off
        ("_scoring_params", {"type": "tuple", "items": []}),
        ("anything", 1),  # no fitted VAEDetector has it
    ],
)
def test_an_estimator_takes_only_its_parameters_and_fitted_state(saved, key, value):
    _edit_json(saved, lambda header: header["root"]["state"].update({key: value}))
    with pytest.raises(ModelFileError, match=rf"its VAEDetector \(skood.*\) may not set '{key}'"):
        skood.load(saved)


@pytest.mark.parametrize(
    "node",
    [
        {"type": "object", "class": "skorch.net.NeuralNet", "state": {"module_": None}},
        {"type": "object", "class": "skood.nn.vae.VAE", "state": {"_forward_hooks": None}},
    ],
    ids=["skorch-net", "torch-module"],
)
def test_nets_and_modules_are_never_rebuilt_as_plain_objects(saved, node):
    """As plain objects they would skip the checks of their own node kinds (net parameters, hooks)."""
    _edit_json(saved, lambda header: header["root"]["state"].update(callbacks=node))
    with pytest.raises(ModelFileError, match="is stored as a plain object"):
        skood.load(saved, trusted=[node["class"]])  # not even when the class is trusted
    if node["class"].startswith("skorch."):  # and a net as an object is not trusted unasked
        with pytest.raises(UntrustedTypesError, match=r"skorch\.net\.NeuralNet is from skood"):
            skood.load(saved)


class ScaledNet(torch.nn.Module):
    """A user module with a class-level default that instances override: plain data, allowed."""

    scale = 1.0

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(4, 2)
        self.scale = 2.0

    def forward(self, x):
        return self.scale * self.body(x)


def test_legitimate_state_loads_and_save_refuses_what_load_would(tmp_path):
    X, _ = _data(None)
    model = TorchFeatures(ScaledNet(), random_state=0).fit(X)
    loaded = _round_trip(model, tmp_path, trusted=[ScaledNet])
    assert loaded.module_.scale == 2.0
    np.testing.assert_array_equal(loaded.transform(X), model.transform(X))
    model.module_.body.forward = torch.nn.functional.relu  # code in place of a method
    with pytest.raises(TypeError, match=r"Linear holds 'forward' \(Linear defines it"):
        skood.save(model, tmp_path / "bad.skood")
    gauss = GaussianMahalanobis().fit(X)
    gauss.note = "fitted on Monday"  # not an attribute a GaussianMahalanobis has
    with pytest.raises(TypeError, match=r"'note' \(neither a parameter nor fitted state"):
        skood.save(gauss, tmp_path / "bad.skood")
    assert not (tmp_path / "bad.skood").exists()


def test_private_fitted_state_of_every_kind_round_trips(tmp_path):
    """The private attributes in skood.io's inventory: set_output, column transformers, folds."""
    from sklearn.compose import make_column_transformer
    from sklearn.pipeline import make_union

    from skood import ConformalDetector

    X, y = _data(None)
    features = TorchFeatures(torch.nn.Linear(2, 2), random_state=0).set_output(transform="default")
    columns = make_column_transformer((features, [0, 1]), remainder="passthrough")
    assert "_sklearn_output_config" in vars(features)
    union = make_union(TorchFeatures(torch.nn.Linear(4, 2), random_state=0), StandardScaler())
    cross = ConformalDetector(GaussianMahalanobis(), method="cross", random_state=0)
    for model in (columns.fit(X), union.fit(X), cross.fit(X, np.where(y == -1, -1, 1))):
        loaded = _round_trip(model, tmp_path)
        method = "transform" if hasattr(model, "transform") else "score_samples"
        np.testing.assert_array_equal(
            np.asarray(getattr(loaded, method)(X)), np.asarray(getattr(model, method)(X))
        )


# -- what a file rebuilds is validated -----------------------------------------------------------


def _edit_array(path, node_of, edit):
    """Replace the stored array of the node that ``node_of(header)`` picks by ``edit(array)``."""
    from safetensors.numpy import load as read
    from safetensors.numpy import save as write

    members = _members(path)
    arrays = read(members["arrays.safetensors"])
    key = node_of(json.loads(members["skood.json"]))["key"]
    arrays[key] = np.ascontiguousarray(edit(arrays[key]))
    _rewrite(path, {**members, "arrays.safetensors": write(arrays)})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("inference_batch_size", -1, "'inference_batch_size' parameter"),  # scored 0 rows
        ("contamination", 3.0, "'contamination' parameter"),
        ("offset_", {"type": "float", "value": "nan"}, "offset_"),  # flagged every row
        ("offset_", "-3.5", "offset_"),
        ("n_features_in_", 0, "n_features_in_"),
        ("n_features_in_", True, "n_features_in_"),
        (
            "feature_names_in_",
            {"type": "ndarray", "dtype": "|O", "shape": [2], "values": ["a", "b"]},
            "feature_names_in_",
        ),
    ],
)
def test_parameters_and_fitted_state_from_a_file_are_validated(saved, key, value, message):
    _edit_json(saved, lambda header: header["root"]["state"].update({key: value}))
    with pytest.raises(ModelFileError, match=rf"VAEDetector .*{message}.*altered or damaged"):
        skood.load(saved)


@pytest.mark.parametrize(
    "edit", [lambda a: a[::-1], lambda a: np.r_[a[:-1], np.nan]], ids=["unsorted", "nan"]
)
def test_calibration_scores_from_a_file_are_validated(saved, edit):
    _edit_array(saved, lambda header: header["root"]["state"]["calibration_scores_"], edit)
    with pytest.raises(ModelFileError, match="calibration_scores_"):
        skood.load(saved)


def test_sklearns_own_fitted_state_passes_the_checks(tmp_path):
    from sklearn.svm import OneClassSVM

    X, _ = _data(None)
    svm = make_pipeline(StandardScaler(), OneClassSVM(nu=0.1)).fit(X)
    assert svm[-1].offset_.shape == (1,)  # an array, where skood keeps a float
    loaded = _round_trip({"svm": svm, "gauss": GaussianMahalanobis().fit(X)}, tmp_path)
    np.testing.assert_array_equal(loaded["svm"].decision_function(X), svm.decision_function(X))


# -- what a path may be -----------------------------------------------------------------------------


def test_a_missing_file_is_an_oserror_that_says_so(tmp_path, capsys):
    from skood.cli import main

    missing = tmp_path / "missing.skood"
    for read in (skood.load, get_untrusted_types):
        with pytest.raises(FileNotFoundError, match=r"No such model file: .*missing\.skood"):
            read(missing)
    assert main(["score", str(tmp_path / "x.csv"), "--model", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "no such" in err.lower() and "valid model" not in err


def test_only_a_regular_file_is_read(saved, tmp_path):
    with pytest.raises(ModelFileError, match=r"not a regular file \(a directory\)"):
        skood.load(tmp_path)
    link = tmp_path / "link.skood"
    link.symlink_to(saved)  # a symlink is followed
    assert type(skood.load(link)).__name__ == "VAEDetector"
    (tmp_path / "dir-link").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(ModelFileError, match=r"not a regular file \(a directory\)"):
        get_untrusted_types(tmp_path / "dir-link")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "model.skood"
    os.mkfifo(fifo)
    outcome = []

    def load():
        try:
            skood.load(fifo)
        except Exception as exc:  # the outcome is what the test checks
            outcome.append(exc)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():  # blocked in open(): let it go (a writer that writes nothing)
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(timeout=30)
        pytest.fail("load blocked on a FIFO, waiting for a writer")
    assert isinstance(outcome[0], ModelFileError)
    assert "not a regular file (a FIFO" in str(outcome[0])


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_an_endless_device_is_refused_unread():
    with pytest.raises(ModelFileError, match=r"not a regular file \(a character device\)"):
        skood.load("/dev/zero")  # read to its end, it filled the memory


# -- get_untrusted_types lists what load resolves ------------------------------------------------


@pytest.mark.parametrize(
    ("node", "resolved"),
    [
        ({"type": "object", "name": "skood.vae.VAEDetector", "class": "os.system"}, "os.system"),
        (
            {"type": "module", "name": "torch.nn.modules.linear.Linear", "class": "os.system"},
            "os.system",
        ),
        ({"type": "skorch", "name": "skorch.net.NeuralNet", "class": "os.system"}, "os.system"),
        (
            {"type": "enum", "name": "torch.nn.modules.linear.Linear", "class": "os.system"},
            "os.system",
        ),
        (
            {"type": "class", "name": "subprocess.Popen", "class": "torch.nn.Linear"},
            "subprocess.Popen",
        ),
        ({"type": "function", "name": "os.system", "class": "torch.nn.Linear"}, "os.system"),
    ],
    ids=lambda value: value["type"] if isinstance(value, dict) else None,
)
def test_the_listing_and_the_loader_read_the_same_name(saved, node, resolved):
    """A node carrying a benign "name" and another "class": both read the one load resolves."""
    _edit_json(saved, lambda header: header["root"]["state"].update(callbacks=node))
    listed = get_untrusted_types(saved)
    with pytest.raises(UntrustedTypesError) as refused:
        skood.load(saved)
    assert listed == refused.value.types == [resolved]


def test_a_plain_dict_that_looks_like_a_node_is_data(tmp_path):
    X, _ = _data(None)
    note = {"type": "function", "name": "os.system", "class": "subprocess.Popen"}
    model = {"model": GaussianMahalanobis().fit(X), "note": note}
    skood.save(model, tmp_path / "m.skood")
    assert get_untrusted_types(tmp_path / "m.skood") == []  # strings, never resolved
    assert skood.load(tmp_path / "m.skood")["note"] == note
