#!/usr/bin/env python3
"""Write the ai.onnx.ml reference fixtures under Tests/Fixtures/ml/.

Each case is a folder Tests/Fixtures/ml/<case>/ holding

  model.onnx     a small model: a scikit-learn model exported by skl2onnx, a LightGBM model
                 exported by onnxmltools, or a graph built by hand with onnx.helper
  expected.json  {"inputs": {NAME: TENSOR}, "outputs": {NAME: TENSOR}, "note": "...",
                  "zipmap": {OUTPUT: [keys as strings]}}   ("zipmap" only where a ZipMap
                 output exists). TENSOR is {"dtype": "float32"|"float64"|"int64"|"int32"|
                 "string", "shape": [...], "values": [flat, row-major]}. Inputs are what was fed
                 to onnxruntime; outputs are every graph output, in graph order, exactly as
                 onnxruntime (CPUExecutionProvider, one intra-op thread) returned them. A ZipMap
                 output (a list of dicts, one per row) is written as a float32 [N, C] tensor
                 whose columns follow the ZipMap node's classlabels (the dicts' key order).
                 Floats are written as the exact double of the value (float32 values widened),
                 so they round-trip; NaN and infinities are the strings "nan", "inf", "-inf"
                 (what JSONText.nonFiniteDecoding reads).

plus Tests/Fixtures/ml/cases.json (the sorted case names) and Tests/Fixtures/ml/README.md.

The cases: scikit-learn classifiers (string and int labels, binary and 3-class), regressors,
transforms alone, hand-built LabelEncoder / ArrayFeatureExtractor / FeatureVectorizer nodes,
tree ensembles written with the ai.onnx.ml opset 3 *_as_tensor attributes, a LightGBM
classifier (when lightgbm and onnxmltools are installed), and seeded random single-node
TreeEnsemble*, LinearClassifier/LinearRegressor and SVMClassifier/SVMRegressor graphs. Every
case is fed 7 rows. All randomness is seeded, so a rerun writes the same files.

This is run once and its output committed; the Swift tests only read the fixtures. Run from
the repo root:

    python3 tools/make_ml_fixtures.py
"""
import json
import os
import shutil
import warnings

import numpy as np
import onnx
import onnxruntime as ort

from fixture_json import tensor_json
from onnx import TensorProto, helper, numpy_helper

warnings.filterwarnings("ignore")  # sklearn ConvergenceWarning, skl2onnx opset notes

from skl2onnx import to_onnx  # noqa: E402
from skl2onnx.common.data_types import Int64TensorType, StringTensorType  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.ensemble import (ExtraTreesClassifier, GradientBoostingClassifier,  # noqa: E402
                              GradientBoostingRegressor, RandomForestClassifier,
                              RandomForestRegressor)
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.linear_model import LinearRegression, LogisticRegression  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import Binarizer, Normalizer, OneHotEncoder, StandardScaler  # noqa: E402
from sklearn.svm import SVC, SVR, LinearSVC  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "ml")
ROWS = 7           # rows fed to every case
TRAIN = 120        # training samples (KNN: KNN_TRAIN)
KNN_TRAIN = 40
FEATURES = 10
STR3 = np.array(["idle", "walk", "run"])
STR2 = np.array(["off", "on"])

CASES = []         # names written, in order
NOTES = {}         # case -> note, for the README
REJECTED = {}      # random family -> [(case, seed, onnxruntime's complaint)]
SURPRISES = []     # exporter behaviour worth knowing, printed at the end and put in the README


# ----------------------------------------------------------------------------------------------
# Writing a case


def _zipmap_labels(model):
    """{graph output name: [class labels as strings]} for outputs a ZipMap node produces."""
    found = {}
    for node in model.graph.node:
        if node.op_type != "ZipMap":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        labels = attrs.get("classlabels_int64s") or attrs.get("classlabels_strings")
        found[node.output[0]] = [v.decode() if isinstance(v, bytes) else str(v) for v in labels]
    return found


def run_ort(path, feeds):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3  # declared-vs-returned shape warnings are noted by write_case instead
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return names, sess.run(names, feeds)


def write_case(name, model, feeds, note):
    """Save model.onnx, run it in onnxruntime on feeds, write expected.json."""
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "model.onnx")
    # skl2onnx lists opset imports in set order (which varies with PYTHONHASHSEED): sort them so
    # reruns write the same bytes (duplicates it writes, e.g. "" twice, are kept).
    imports = sorted(model.opset_import, key=lambda o: (o.domain, o.version))
    del model.opset_import[:]
    model.opset_import.extend(imports)
    onnx.save(model, path)
    names, results = run_ort(path, feeds)
    zipmaps = _zipmap_labels(model)
    outputs, zipmap_keys = {}, {}
    for out_name, value in zip(names, results):
        if isinstance(value, list):  # ZipMap: one dict per row
            keys = zipmaps[out_name]
            for row in value:
                assert [str(k) for k in row.keys()] == keys, (name, out_name, list(row), keys)
            value = np.array([list(row.values()) for row in value], dtype=np.float32).reshape(len(value), len(keys))
            zipmap_keys[out_name] = keys
        outputs[out_name] = tensor_json(value)
        declared = _declared_shape(model, out_name)
        if declared is not None and not _fits(declared, np.shape(value)):
            mismatch = f"output {out_name} declared shape {declared} but onnxruntime returned {list(np.shape(value))}"
            note += f"; {mismatch}"
            SURPRISES.append(f"{name}: {mismatch}")
    doc = {"inputs": {k: tensor_json(v) for k, v in feeds.items()}, "outputs": outputs, "note": note}
    if zipmap_keys:
        doc["zipmap"] = zipmap_keys
    with open(os.path.join(folder, "expected.json"), "w") as f:
        f.write(_dump(doc))
    CASES.append(name)
    NOTES[name] = note


def _declared_shape(model, output_name):
    """The declared dims of a tensor graph output (None for unknown dims), or None."""
    for out in model.graph.output:
        if out.name == output_name and out.type.HasField("tensor_type") and out.type.tensor_type.HasField("shape"):
            return [d.dim_value if d.HasField("dim_value") else None for d in out.type.tensor_type.shape.dim]
    return None


def _fits(declared, actual):
    return len(declared) == len(actual) and all(d is None or d == a for d, a in zip(declared, actual))


def _dump(doc):
    """JSON with one line per tensor (readable diffs, small files)."""
    def one(v):
        return json.dumps(v, allow_nan=False, separators=(",", ":"))
    lines = ["{"]
    for section in ("inputs", "outputs"):
        items = [f'    {one(k)}: {one(v)}' for k, v in doc[section].items()]
        lines.append(f'  "{section}": {{\n' + ",\n".join(items) + "\n  },")
    extra = [f'  "{k}": {one(doc[k])}' for k in doc if k not in ("inputs", "outputs")]
    lines.append(",\n".join(extra))
    lines.append("}")
    return "\n".join(lines) + "\n"


def node_attrs_of(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def node_attrs(model, op_type):
    """Attributes of the first node of op_type, as {name: value}."""
    return next((node_attrs_of(n) for n in model.graph.node if n.op_type == op_type), None)


def opsets(model):
    return dict(sorted((o.domain or "ai.onnx", o.version) for o in model.opset_import))


# ----------------------------------------------------------------------------------------------
# Data


def classification(seed, n_classes, labels, n_train=TRAIN, n_features=FEATURES):
    """(X_train float32, y_train, X_feed float32 [ROWS, F]); labels maps class index -> label."""
    X, y = make_classification(n_samples=n_train + ROWS, n_features=n_features, n_informative=5,
                               n_redundant=2, n_classes=n_classes, random_state=seed)
    X = X.astype(np.float32)
    y = np.asarray(labels)[y]
    return X[:n_train], y[:n_train], X[n_train:]


def regression(seed, n_targets=1, n_features=FEATURES):
    X, y = make_regression(n_samples=TRAIN + ROWS, n_features=n_features, n_informative=6,
                           n_targets=n_targets, noise=5.0, random_state=seed)
    X = X.astype(np.float32)
    return X[:TRAIN], y[:TRAIN], X[TRAIN:]


def describe_export(model):
    """What skl2onnx wrote: its ai.onnx.ml nodes (with post_transform), all op types, the opsets."""
    ml = []
    for node in model.graph.node:
        if node.domain == "ai.onnx.ml":
            pt = (node_attrs_of(node).get("post_transform") or b"").decode()
            ml.append(node.op_type + (f"(post_transform={pt})" if pt else ""))
    counted = [f"{op} x{ml.count(op)}" if ml.count(op) > 1 else op for op in dict.fromkeys(ml)]
    ops = " ".join(sorted({n.op_type for n in model.graph.node}))
    return f"ai.onnx.ml nodes: {', '.join(counted) or 'none'}; ops: {ops}; opsets {opsets(model)}"


# ----------------------------------------------------------------------------------------------
# 1. Classifiers


def classifier_factories():
    return {
        "logreg": lambda: LogisticRegression(),
        "linearsvc": lambda: LinearSVC(),
        "svc": lambda: SVC(),
        "svcprob": lambda: SVC(probability=True, random_state=0),
        "rf": lambda: RandomForestClassifier(n_estimators=5, max_depth=5, random_state=0),
        "extratrees": lambda: ExtraTreesClassifier(n_estimators=5, max_depth=5, random_state=0),
        "gb": lambda: GradientBoostingClassifier(n_estimators=5, max_depth=3, random_state=0),
        "knn": lambda: KNeighborsClassifier(n_neighbors=3),
        "mlp": lambda: MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, random_state=0),
        "pipeline": lambda: make_pipeline(StandardScaler(), LogisticRegression()),
    }


def classifiers():
    # (suffix, n_classes, labels)
    variants = {"str3": (3, STR3), "int2": (2, np.array([0, 1])),
                "int3": (3, np.array([0, 1, 2])), "str2": (2, STR2)}
    wanted = [(kind, v) for kind in classifier_factories() for v in ("str3", "int2")]
    wanted += [("logreg", "int3"), ("rf", "int3"), ("logreg", "str2"), ("rf", "str2")]
    for kind, variant in wanted:
        n_classes, labels = variants[variant]
        n_train = KNN_TRAIN if kind == "knn" else TRAIN
        X, y, feed = classification(100 + n_classes, n_classes, labels, n_train=n_train)
        est = classifier_factories()[kind]().fit(X, y)
        model = to_onnx(est, X[:1].astype(np.float32))
        note = (f"{type(est).__name__ if kind != 'pipeline' else 'StandardScaler+LogisticRegression'}"
                f" on {n_classes} classes {list(map(str, est.classes_))}, skl2onnx defaults: "
                + describe_export(model))
        write_case(f"{kind}_{variant}", model, {"X": feed}, note)


# ----------------------------------------------------------------------------------------------
# 2. Regressors


def regressors():
    cases = {
        "linreg": (LinearRegression(), 1),
        "svr": (SVR(), 1),
        "rfreg": (RandomForestRegressor(n_estimators=5, max_depth=5, random_state=0), 1),
        "gbreg": (GradientBoostingRegressor(n_estimators=5, max_depth=3, random_state=0), 1),
        "rfreg_2targets": (RandomForestRegressor(n_estimators=5, max_depth=5, random_state=0), 2),
    }
    for name, (est, n_targets) in cases.items():
        X, y, feed = regression(200 + n_targets, n_targets)
        est.fit(X, y)
        model = to_onnx(est, X[:1].astype(np.float32))
        write_case(name, model, {"X": feed},
                   f"{type(est).__name__}, {n_targets} target(s), skl2onnx defaults: " + describe_export(model))


# ----------------------------------------------------------------------------------------------
# 3. Transforms alone and hand-built ai.onnx.ml nodes


def ml_model(nodes, inputs, outputs, ml_opset, initializers=(), name="ml"):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, producer_name="sluice-tools", opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", ml_opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def transforms():
    rng = np.random.default_rng(300)
    X, _, feed = classification(300, 2, np.array([0, 1]))

    est = StandardScaler().fit(X)
    model = to_onnx(est, X[:1])
    write_case("scaler", model, {"X": feed}, "StandardScaler: " + describe_export(model))

    for norm in ("l1", "l2", "max"):
        model = to_onnx(Normalizer(norm=norm).fit(X), X[:1])
        write_case(f"normalizer_{norm}", model, {"X": feed},
                   f"Normalizer(norm={norm}): " + describe_export(model)
                   + f"; norm attribute {node_attrs(model, 'Normalizer')['norm'].decode()}")

    model = to_onnx(Binarizer(threshold=0.3).fit(X), X[:1])
    write_case("binarizer", model, {"X": feed}, "Binarizer(threshold=0.3): " + describe_export(model))

    holes = X.copy()
    holes[rng.random(holes.shape) < 0.15] = np.nan
    est = SimpleImputer(strategy="mean", missing_values=np.nan).fit(holes)
    model = to_onnx(est, holes[:1])
    fed = feed.copy()
    fed[rng.random(fed.shape) < 0.25] = np.nan
    fed[0, 0] = np.nan
    write_case("imputer_mean", model, {"X": fed},
               "SimpleImputer(strategy=mean, missing_values=nan), NaN in the fed rows: " + describe_export(model))

    # OneHotEncoder on two int64 categorical columns; the last row has a value never seen in training.
    cats = rng.integers(0, 4, size=(60, 2)).astype(np.int64) * np.array([1, 10], dtype=np.int64)
    est = OneHotEncoder(handle_unknown="ignore").fit(cats)
    model = to_onnx(est, initial_types=[("X", Int64TensorType([None, 2]))])
    fed = rng.integers(0, 4, size=(ROWS, 2)).astype(np.int64) * np.array([1, 10], dtype=np.int64)
    fed[-1, 0] = 99
    write_case("onehot_int", model, {"X": fed},
               "OneHotEncoder(handle_unknown=ignore) on 2 int64 columns (cats 0..3 and 0,10,20,30); "
               "row 6 column 0 is the unknown 99: " + describe_export(model))

    words = np.array(["red", "green", "blue", "amber"], dtype=object)
    est = OneHotEncoder(handle_unknown="ignore").fit(words[rng.integers(0, 4, size=60)].reshape(-1, 1))
    model = to_onnx(est, initial_types=[("X", StringTensorType([None, 1]))])
    fed = np.array(["red", "blue", "amber", "green", "red", "violet", "blue"], dtype=object).reshape(-1, 1)
    write_case("onehot_str", model, {"X": fed},
               "OneHotEncoder(handle_unknown=ignore) on one string column; 'violet' is unknown: "
               + describe_export(model))

    # LabelEncoder, string -> int64 (ai.onnx.ml 2)
    node = helper.make_node("LabelEncoder", ["X"], ["Y"], domain="ai.onnx.ml",
                            keys_strings=["idle", "run", "walk"], values_int64s=[0, 1, 2], default_int64=-1)
    model = ml_model([node], [helper.make_tensor_value_info("X", TensorProto.STRING, ["N"])],
                     [helper.make_tensor_value_info("Y", TensorProto.INT64, ["N"])], 2)
    fed = np.array(["walk", "idle", "run", "jump", "run", "", "Walk"], dtype=object)
    write_case("labelencoder_str2int", model, {"X": fed},
               "hand-built LabelEncoder (ai.onnx.ml 2) keys_strings/values_int64s, default_int64=-1; "
               "'jump', '' and 'Walk' are not keys")

    # LabelEncoder, int64 -> string (ai.onnx.ml 2), [N, 1] input
    node = helper.make_node("LabelEncoder", ["X"], ["Y"], domain="ai.onnx.ml",
                            keys_int64s=[0, 1, 2, -5], values_strings=["idle", "run", "walk", "neg"],
                            default_string="unknown")
    model = ml_model([node], [helper.make_tensor_value_info("X", TensorProto.INT64, ["N", 1])],
                     [helper.make_tensor_value_info("Y", TensorProto.STRING, ["N", 1])], 2)
    fed = np.array([[2], [0], [1], [7], [-5], [1], [3]], dtype=np.int64)
    write_case("labelencoder_int2str", model, {"X": fed},
               "hand-built LabelEncoder (ai.onnx.ml 2) keys_int64s/values_strings, default_string='unknown'")

    # LabelEncoder, float -> int64 with ai.onnx.ml 4 tensor attributes (a NaN key too)
    keys = np.array([0.5, -1.25, 3.0, np.nan, 0.1], dtype=np.float32)
    node = helper.make_node("LabelEncoder", ["X"], ["Y"], domain="ai.onnx.ml",
                            keys_tensor=numpy_helper.from_array(keys, "keys"),
                            values_tensor=numpy_helper.from_array(np.array([10, 20, 30, 40, 50], np.int64), "values"),
                            default_tensor=numpy_helper.from_array(np.array([-7], np.int64), "default"))
    model = ml_model([node], [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N"])],
                     [helper.make_tensor_value_info("Y", TensorProto.INT64, ["N"])], 4)
    fed = np.array([3.0, 0.5, np.nan, 2.0, -1.25, 0.1, 0.10000001], dtype=np.float32)
    write_case("labelencoder_float2int", model, {"X": fed},
               "hand-built LabelEncoder (ai.onnx.ml 4) keys_tensor float32 (one key NaN), values_tensor int64, "
               "default_tensor [-7]; input NaN looks up the NaN key; 0.10000001 is not the key 0.1")

    # ArrayFeatureExtractor with repeated, unordered indices
    idx = numpy_helper.from_array(np.array([3, 0, 3, 9, 5], dtype=np.int64), "indices")
    node = helper.make_node("ArrayFeatureExtractor", ["X", "indices"], ["Y"], domain="ai.onnx.ml")
    model = ml_model([node], [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", FEATURES])],
                     [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 5])], 1, [idx])
    write_case("arrayfeatureextractor", model, {"X": feed},
               "hand-built ArrayFeatureExtractor (ai.onnx.ml 1), X float [N,10], indices initializer [3,0,3,9,5]")

    # FeatureVectorizer over two inputs of widths 3 and 2
    node = helper.make_node("FeatureVectorizer", ["A", "B"], ["Y"], domain="ai.onnx.ml", inputdimensions=[3, 2])
    model = ml_model([node], [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["N", 3]),
                              helper.make_tensor_value_info("B", TensorProto.FLOAT, ["N", 2])],
                     [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 5])], 1)
    write_case("featurevectorizer", model, {"A": feed[:, :3].copy(), "B": feed[:, 3:5].copy()},
               "hand-built FeatureVectorizer (ai.onnx.ml 1), inputdimensions [3,2]")


# ----------------------------------------------------------------------------------------------
# 4. Tree ensemble attribute forms


def tree_forms():
    opset = {"": 17, "ai.onnx.ml": 3}
    X64, y = make_classification(n_samples=TRAIN + ROWS, n_features=FEATURES, n_informative=5, n_redundant=2,
                                 n_classes=3, random_state=400)
    y = STR3[y]
    est = RandomForestClassifier(n_estimators=5, max_depth=5, random_state=0).fit(X64[:TRAIN], y[:TRAIN])
    model = to_onnx(est, X64[:1], target_opset=opset)
    model, how = _ensure_as_tensor(model, est, "rf_double_ml3")
    write_case("rf_double_ml3", model, {"X": _on_thresholds(X64[TRAIN:], est)},
               "RandomForestClassifier(5, max_depth=5) 3 string classes, float64 input, target_opset "
               f"{{'':17,'ai.onnx.ml':3}}: {how}; {describe_export(model)}; {_tensor_attr_note(model)}")

    Xr, yr = make_regression(n_samples=TRAIN + ROWS, n_features=FEATURES, n_informative=6, noise=5.0,
                             random_state=401)
    est = RandomForestRegressor(n_estimators=5, max_depth=5, random_state=0).fit(Xr[:TRAIN], yr[:TRAIN])
    model = to_onnx(est, Xr[:1], target_opset=opset)
    model, how = _ensure_as_tensor(model, est, "rfreg_double_ml3")
    write_case("rfreg_double_ml3", model, {"X": _on_thresholds(Xr[TRAIN:], est)},
               "RandomForestRegressor(5, max_depth=5), float64 input, target_opset {'':17,'ai.onnx.ml':3}: "
               f"{how}; {describe_export(model)}; {_tensor_attr_note(model)}")

    try:
        import lightgbm
        from onnxmltools import convert_lightgbm
        from onnxmltools.convert.common.data_types import FloatTensorType as MLFloatTensorType
    except ImportError as err:
        print(f"skipping lgbm_int3: {err}")
        return
    X, y, feed = classification(402, 3, np.array([0, 1, 2]))
    est = lightgbm.LGBMClassifier(n_estimators=5, num_leaves=7, random_state=0, verbose=-1).fit(X, y)
    model = convert_lightgbm(est, initial_types=[("X", MLFloatTensorType([None, FEATURES]))],
                             target_opset=15, zipmap=True)
    model.graph.name = "lgbm_int3"  # onnxmltools names the graph with a random uuid
    modes = sorted({m.decode() for m in node_attrs(model, "TreeEnsembleClassifier")["nodes_modes"]})
    tracks = node_attrs(model, "TreeEnsembleClassifier").get("nodes_missing_value_tracks_true", [])
    fed = feed.copy()
    fed[1, :] = np.nan
    fed[3, ::2] = np.nan
    write_case("lgbm_int3", model, {"X": fed},
               f"LGBMClassifier(n_estimators=5, num_leaves=7) 3 int classes via onnxmltools {describe_export(model)}; "
               f"nodes_modes {modes}, {sum(tracks)} of {len(tracks)} nodes track missing true; "
               "row 1 all NaN, row 3 NaN in even columns")


def _tensor_attr_note(model):
    for node in model.graph.node:
        if node.op_type.startswith("TreeEnsemble"):
            names = sorted(a.name for a in node.attribute if a.name.endswith("_as_tensor"))
            return f"{node.op_type} *_as_tensor attributes: {names or 'none'}"
    return "no TreeEnsemble node"


def _on_thresholds(feed, forest):
    """Rows 0-2 each get one feature set exactly to a float64 threshold that rounds down in float32,
    at a node on the row's path through a tree (where the new value takes the same branches above
    it): there `x <= threshold` holds in float64 but fails against the threshold read as float32."""
    feed = feed.copy()
    trees = [t.tree_ for t in forest.estimators_]
    for row in range(3):
        for tree in trees[row:] + trees[:row]:
            if _put_on_threshold(feed[row], tree):
                break
    return feed


def _put_on_threshold(x, tree):
    node, above = 0, []  # above: (feature, threshold, went left) of the nodes passed
    while tree.children_left[node] != -1:
        f, t = tree.feature[node], tree.threshold[node]
        if np.float32(t) < t and all((t <= ta) == left for fa, ta, left in above if fa == f):
            x[f] = t
            return True
        left = bool(x[f] <= t)
        above.append((f, t, left))
        node = tree.children_left[node] if left else tree.children_right[node]
    return False


def _ensure_as_tensor(model, forest, name):
    """Return (model, how). If skl2onnx wrote plain float attributes (it ignores ai.onnx.ml 3 for
    trees), rewrite the TreeEnsemble node in the ai.onnx.ml 3 form: nodes_values, class/target
    weights and hitrates as float64 *_as_tensor attributes taken from the sklearn trees (exact
    doubles, checked against skl2onnx's float32 values), and the tree's outputs declared float."""
    node = next(n for n in model.graph.node if n.op_type.startswith("TreeEnsemble"))
    if any(a.name.endswith("_as_tensor") for a in node.attribute):
        return model, "skl2onnx wrote *_as_tensor attributes"
    print(f"WARNING: {name}: skl2onnx wrote no *_as_tensor attribute (ml opsets {opsets(model)}); "
          "rewriting the node in the ai.onnx.ml 3 tensor form")
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    trees = [t.tree_ for t in forest.estimators_]
    pairs = list(zip(attrs["nodes_treeids"], attrs["nodes_nodeids"]))
    values = [trees[t].threshold[n] if mode != b"LEAF" else 0.0
              for (t, n), mode in zip(pairs, attrs["nodes_modes"])]
    tensors = {"nodes_values": values, "nodes_hitrates": [1.0] * len(values)}
    scale = 1.0 / len(trees)
    if "class_weights" in attrs:
        def weight(t, n, c):
            v = trees[t].value[n, 0]
            return v[c] / v.sum() * scale
        tensors["class_weights"] = [weight(t, n, c) for t, n, c in
                                    zip(attrs["class_treeids"], attrs["class_nodeids"], attrs["class_ids"])]
    else:
        tensors["target_weights"] = [trees[t].value[n, k, 0] * scale for t, n, k in
                                     zip(attrs["target_treeids"], attrs["target_nodeids"], attrs["target_ids"])]
    for key, doubles in tensors.items():
        assert np.allclose(np.float32(doubles), attrs[key], rtol=1e-6, atol=1e-6), key
    kept = [a for a in node.attribute if a.name not in tensors]
    del node.attribute[:]
    node.attribute.extend(kept)
    for key, doubles in tensors.items():
        node.attribute.append(helper.make_attribute(
            key + "_as_tensor", numpy_helper.from_array(np.array(doubles, np.float64), key)))
    for out in model.graph.output:  # skl2onnx declares the regressor's output double; it is float
        if out.name in node.output and out.type.tensor_type.elem_type == TensorProto.DOUBLE:
            out.type.tensor_type.elem_type = TensorProto.FLOAT
    for imp in model.opset_import:
        if imp.domain == "ai.onnx.ml":
            imp.version = 3
    onnx.checker.check_model(model, full_check=True)
    SURPRISES.append(f"{name}: skl2onnx {__import__('skl2onnx').__version__} with target_opset "
                     "{'':17,'ai.onnx.ml':3} and float64 input still wrote ai.onnx.ml opset 1 and float "
                     "attributes (no *_as_tensor)" + ("; it declared the TreeEnsembleRegressor output double, "
                     "which onnxruntime refuses to load" if "target_weights" in tensors else "")
                     + "; the script rewrote the node with *_as_tensor float64 attributes")
    return model, ("skl2onnx wrote no *_as_tensor attributes; rewritten by the script as ai.onnx.ml 3 "
                   "*_as_tensor float64 attributes from sklearn's exact thresholds/weights; rows 0-2 "
                   "each hold a float64 threshold (one that rounds down in float32) exactly in the feature tested")


# ----------------------------------------------------------------------------------------------
# 5. Random single-node graphs (differential against onnxruntime)
#
# Case i of a family draws its numbers from np.random.default_rng(seed) but takes the properties
# that matter most (classifier or regressor, attribute form, post_transform, class count, kernel)
# from i in a fixed cycle, so every combination the brief asks for is present.

MODES = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"]
POSTS = ["NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO", "PROBIT"]
WORDS = ["alpha", "beta", "gamma", "delta", "eps"]
KERNELS = ["LINEAR", "POLY", "RBF", "SIGMOID"]


def random_features(rng, n_features, nan_rate=0.0, dtype=np.float32):
    """[ROWS, F]; odd columns are coarse (steps of 0.5) so equality tests hit."""
    x = rng.normal(size=(ROWS, n_features))
    x[:, 1::2] = np.round(x[:, 1::2] * 2) / 2
    if nan_rate:
        x[rng.random(x.shape) < nan_rate] = np.nan
    return x.astype(dtype)


def random_labels(rng, n, ints, attr_int):
    """(attributes, label output info, labels): distinct, unsorted int64 or string labels."""
    if ints:
        labels = [int(v) for v in rng.choice(np.arange(-3, 20), size=n, replace=False)]
        return {attr_int: labels}, helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]), labels
    labels = [str(v) for v in rng.choice(WORDS, size=n, replace=False)]
    return ({"classlabels_strings": labels}, helper.make_tensor_value_info("label", TensorProto.STRING, ["N"]),
            labels)


def f32(values):
    return [float(v) for v in np.asarray(values, dtype=np.float32).reshape(-1)]


def random_tree(rng, tree_id, n_features, fed):
    """One tree as a list of node dicts in preorder (ids 0..n-1), leaves have mode LEAF. Thresholds
    are fed values (half the time, so boundaries get hit) or random ones, in fed's precision."""
    depth = int(rng.integers(1, 6))
    nodes = []

    def build(level):
        node = {"tree": tree_id, "id": len(nodes)}
        nodes.append(node)
        if level == depth or (level > 0 and rng.random() < 0.25):
            node.update(mode="LEAF", feature=0, value=0.0, missing=0, true=0, false=0)
            return node["id"]
        feature = int(rng.integers(n_features))
        column = fed[:, feature][~np.isnan(fed[:, feature])]
        if len(column) and rng.random() < 0.5:
            value = float(rng.choice(column))
        else:
            value = float(fed.dtype.type(rng.normal()))
        node.update(mode=str(rng.choice(MODES)), feature=feature, value=value,
                    missing=int(rng.random() < 0.5))
        node["true"] = build(level + 1)
        node["false"] = build(level + 1)
        return node["id"]

    build(0)
    return nodes


def _tree_floats(attrs, name, values, as_tensor):
    """Set a float attribute, or its ai.onnx.ml 3 float64 *_as_tensor form."""
    if as_tensor:
        attrs[name + "_as_tensor"] = numpy_helper.from_array(np.array(values, np.float64), name)
    else:
        attrs[name] = f32(values)


# Classifier case j (every other tree case): (classes, weights for class id 1 only) and post_transform.
TREE_CLASSES = [(2, True), (3, False), (2, False), (4, False), (2, True),
                (3, False), (4, False), (2, True), (2, False), (3, False)]


def random_tree_case(rng, i):
    """A TreeEnsembleClassifier (even i) or TreeEnsembleRegressor (odd i)."""
    j = i // 2
    form = ["ml1", "ml3", "ml3_double"][j % 3]
    as_tensor = form == "ml3_double"  # double input, every float attribute as a float64 tensor
    n_features = int(rng.integers(3, 7))
    fed = random_features(rng, n_features, nan_rate=0.15, dtype=np.float64 if as_tensor else np.float32)
    n_trees = int(rng.integers(1, 5))
    nodes = [n for t in range(n_trees) for n in random_tree(rng, t, n_features, fed)]
    leaves = [n for n in nodes if n["mode"] == "LEAF"]
    attrs = {
        "nodes_treeids": [n["tree"] for n in nodes], "nodes_nodeids": [n["id"] for n in nodes],
        "nodes_featureids": [n["feature"] for n in nodes], "nodes_modes": [n["mode"] for n in nodes],
        "nodes_truenodeids": [n["true"] for n in nodes], "nodes_falsenodeids": [n["false"] for n in nodes],
        "nodes_missing_value_tracks_true": [n["missing"] for n in nodes],
    }
    _tree_floats(attrs, "nodes_values", [n["value"] for n in nodes], as_tensor)
    x_info = helper.make_tensor_value_info("X", TensorProto.DOUBLE if as_tensor else TensorProto.FLOAT,
                                           ["N", n_features])
    shape = f"{form}, {n_trees} trees, {len(nodes)} nodes"
    if i % 2 == 0:
        n_classes, one_column = TREE_CLASSES[j]
        post = POSTS[j % 5]
        probit = post == "PROBIT"  # PROBIT is only finite on (0, 1): every score is kept inside it
        positive = j % 2 == 0 or probit  # weights in [0, 1) or signed
        tids, nids, cids, weights = [], [], [], []
        for leaf in leaves:
            ids = ([1] if one_column else list(range(n_classes)) if probit
                   else [c for c in range(n_classes) if rng.random() < 0.8] or [0])
            for c in ids:
                tids.append(leaf["tree"]); nids.append(leaf["id"]); cids.append(c)
                weights.append(rng.uniform(0.05, 0.95) / n_trees if probit
                               else rng.random() if positive else rng.normal())
        attrs.update(class_treeids=tids, class_nodeids=nids, class_ids=cids, post_transform=post)
        _tree_floats(attrs, "class_weights", weights, as_tensor)
        has_base = rng.random() < 0.4 and not probit
        if has_base:
            _tree_floats(attrs, "base_values", rng.normal(size=n_classes), as_tensor)
        label_attrs, label_info, labels = random_labels(rng, n_classes, j % 4 in (0, 3), "classlabels_int64s")
        attrs.update(label_attrs)
        node = helper.make_node("TreeEnsembleClassifier", ["X"], ["label", "scores"], domain="ai.onnx.ml", **attrs)
        outputs = [label_info, helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", n_classes])]
        note = (f"TreeEnsembleClassifier {shape}, {n_classes} classes {labels}, post_transform {post}, "
                + ("weights for class id 1 only (binary case), " if one_column else "")
                + f"{'positive' if positive else 'signed'} weights, base_values {has_base}")
    else:
        n_targets = j % 3 + 1
        aggregate = ["SUM", "AVERAGE", "MIN", "MAX"][j % 4]
        post = ["NONE", "NONE", "SOFTMAX", "NONE", "LOGISTIC", "NONE", "SOFTMAX_ZERO", "NONE", "PROBIT", "NONE"][j]
        probit = post == "PROBIT"  # keep the sums inside (0, 1), where PROBIT is finite
        tids, nids, targets, weights = [], [], [], []
        for leaf in leaves:
            for t in range(n_targets):
                if probit or rng.random() < 0.9:  # some leaves give no weight to some target
                    tids.append(leaf["tree"]); nids.append(leaf["id"]); targets.append(t)
                    weights.append(rng.uniform(0.05, 0.95) / n_trees if probit else rng.normal())
        attrs.update(target_treeids=tids, target_nodeids=nids, target_ids=targets, n_targets=n_targets,
                     aggregate_function=aggregate, post_transform=post)
        _tree_floats(attrs, "target_weights", weights, as_tensor)
        has_base = j % 2 == 1 and not probit
        if has_base:
            _tree_floats(attrs, "base_values", rng.normal(size=n_targets), as_tensor)
        node = helper.make_node("TreeEnsembleRegressor", ["X"], ["Y"], domain="ai.onnx.ml", **attrs)
        outputs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", n_targets])]
        note = (f"TreeEnsembleRegressor {shape}, {n_targets} targets, aggregate {aggregate}, "
                f"post_transform {post}, base_values {has_base}"
                + ("" if probit else ", some leaves lack a weight for some target"))
    model = ml_model([node], [x_info], outputs, 1 if form == "ml1" else 3, name="random_tree")
    return model, {"X": fed}, note + "; 15% of inputs NaN, odd columns in steps of 0.5"


def random_linear_case(rng, i):
    """LinearClassifier (10 cases: 1, 3 or 2 coefficient rows) or LinearRegressor (i = 5, 11)."""
    n_features = int(rng.integers(2, 7))
    fed = random_features(rng, n_features)
    x_info = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", n_features])
    if i in (5, 11):
        n_targets = 1 if i == 5 else 3
        post = "NONE" if i == 5 else "SOFTMAX"
        node = helper.make_node("LinearRegressor", ["X"], ["Y"], domain="ai.onnx.ml", targets=n_targets,
                                coefficients=f32(rng.normal(size=n_targets * n_features)),
                                intercepts=f32(rng.normal(size=n_targets)), post_transform=post)
        model = ml_model([node], [x_info], [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", n_targets])], 1)
        return model, {"X": fed}, f"LinearRegressor, {n_targets} targets, post_transform {post}"
    j = i if i < 5 else i - 1
    rows = [1, 3, 2][j % 3]
    multi = (j // 3) % 2
    post = POSTS[(j + j // 5) % 5]
    # intercepts are always given: onnxruntime refuses a LinearClassifier without them
    # ("LinearClassifier: intercepts must not be empty"), though the spec makes them optional.
    if post == "PROBIT":  # small scores around 0.5, inside (0, 1) where PROBIT is finite
        coefficients, intercepts = rng.uniform(-0.05, 0.05, rows * n_features), rng.uniform(0.3, 0.7, rows)
    else:
        coefficients, intercepts = rng.normal(size=rows * n_features), rng.normal(size=rows)
    attrs = {"coefficients": f32(coefficients), "intercepts": f32(intercepts), "multi_class": multi,
             "post_transform": post}
    label_attrs, label_info, labels = random_labels(rng, max(rows, 2), j % 2 == 0, "classlabels_ints")
    attrs.update(label_attrs)
    node = helper.make_node("LinearClassifier", ["X"], ["label", "scores"], domain="ai.onnx.ml", **attrs)
    model = ml_model([node], [x_info], [label_info, helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", None])], 1)
    return model, {"X": fed}, (f"LinearClassifier, {rows} coefficient row(s), labels {labels}, "
                               f"multi_class {multi}, post_transform {post}")


def svm_kernel(x, sv, kernel, params):
    """[rows, support vectors] kernel values in float64, as the ONNX spec defines them."""
    gamma, coef0, degree = params
    dot = x.astype(np.float64) @ sv.T
    if kernel == "LINEAR":
        return dot
    if kernel == "POLY":
        return (gamma * dot + coef0) ** degree
    if kernel == "SIGMOID":
        return np.tanh(gamma * dot + coef0)
    return np.exp(-gamma * ((x[:, None, :].astype(np.float64) - sv[None]) ** 2).sum(-1))  # RBF


def centring_rho(scores):
    """A rho that puts the decision boundary halfway between the 3rd and 4th smallest row."""
    s = np.sort(scores)
    return -(s[2] + s[3]) / 2


def random_svm_case(rng, i):
    """SVMClassifier (i % 3 != 2) or SVMRegressor (i % 3 == 2). With support vectors, rho is set
    so that the rows split around the decision boundary (labels and one_class outputs vary)."""
    n_features = int(rng.integers(2, 6))
    fed = random_features(rng, n_features)
    x_info = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", n_features])
    params = f32([rng.uniform(0.05, 0.5), rng.uniform(-1, 1), rng.choice([2, 3])])
    if i % 3 == 2:
        k = i // 3
        kernel = KERNELS[(k + 2) % 4]
        linear_mode = k == 5  # no support vectors: coefficients are a weight per feature
        n_sv = 0 if linear_mode else int(rng.integers(2, 7))
        one_class = int(k in (1, 4))
        post = "LOGISTIC" if k == 3 else "NONE"
        coefficients = np.float32(rng.normal(size=n_features if linear_mode else n_sv))
        attrs = {"kernel_type": kernel, "kernel_params": params, "n_supports": n_sv, "one_class": one_class,
                 "post_transform": post, "coefficients": f32(coefficients)}
        if linear_mode:
            attrs["rho"] = f32([rng.normal()])
        else:
            sv = np.float32(rng.normal(size=(n_sv, n_features)))
            attrs["support_vectors"] = f32(sv)
            attrs["rho"] = f32([centring_rho(svm_kernel(fed, sv, kernel, params) @ coefficients)])
        node = helper.make_node("SVMRegressor", ["X"], ["Y"], domain="ai.onnx.ml", **attrs)
        model = ml_model([node], [x_info], [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 1])], 1)
        return model, {"X": fed}, (f"SVMRegressor {kernel} kernel_params {params}, "
                                   + ("linear mode (n_supports 0)" if linear_mode else f"{n_sv} support vectors")
                                   + f", one_class {one_class}, post_transform {post}")
    j = i - i // 3
    group = j // 4  # 0: binary, prob_a/prob_b on even j; 1: 3 classes, no prob; 2: 3 classes with prob
    kernel = KERNELS[j % 4]
    linear_mode = j >= 12  # no support vectors: one row of coefficients per class
    n_classes = 2 if group == 0 or j == 12 else 3
    with_prob = (group == 0 and j % 2 == 0) or group == 2
    post = POSTS[(j + group) % 4]  # PROBIT left out: the scores are not probabilities
    pairs = n_classes * (n_classes - 1) // 2
    if linear_mode:
        kernel = "LINEAR"
        vpc = []
        attrs = {"coefficients": f32(rng.normal(size=n_classes * n_features)), "rho": f32(rng.normal(size=n_classes))}
    else:
        vpc = [int(v) for v in rng.integers(1, 4, size=n_classes)]
        sv = np.float32(rng.normal(size=(sum(vpc), n_features)))
        coef = np.float32(rng.normal(size=(n_classes - 1, sum(vpc))))
        gram = svm_kernel(fed, sv, kernel, params)
        start = np.cumsum([0] + vpc)
        rho = []
        for a in range(n_classes):  # one-vs-one pairs in libsvm order, as the spec's rho is
            for b in range(a + 1, n_classes):
                sa, sb = slice(start[a], start[a + 1]), slice(start[b], start[b + 1])
                rho.append(centring_rho(gram[:, sa] @ coef[b - 1, sa] + gram[:, sb] @ coef[a, sb]))
        attrs = {"vectors_per_class": vpc, "support_vectors": f32(sv), "coefficients": f32(coef), "rho": f32(rho)}
    attrs.update(kernel_type=kernel, kernel_params=params, post_transform=post)
    if with_prob:
        attrs["prob_a"] = f32(rng.uniform(-3, -0.5, size=pairs))
        attrs["prob_b"] = f32(rng.uniform(-0.5, 0.5, size=pairs))
    label_attrs, label_info, labels = random_labels(rng, n_classes, j % 2 == 1, "classlabels_ints")
    attrs.update(label_attrs)
    node = helper.make_node("SVMClassifier", ["X"], ["label", "scores"], domain="ai.onnx.ml", **attrs)
    model = ml_model([node], [x_info], [label_info, helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", None])], 1)
    shape = "linear mode (no support vectors)" if linear_mode else f"vectors_per_class {vpc}"
    return model, {"X": fed}, (f"SVMClassifier {kernel} kernel_params {params}, {n_classes} classes {labels}, "
                               f"{shape}, prob_a/prob_b {with_prob}, post_transform {post}")


def random_graphs():
    """Seed = 1000 * family + 10 * case + attempt; a graph onnxruntime refuses is redrawn.

    With onnxruntime 1.32 none of the 52 graphs is refused (README.md records the count). An
    earlier draft that sometimes left LinearClassifier's optional intercepts out had 1 of 8
    linear graphs refused ("LinearClassifier: intercepts must not be empty"), so intercepts are
    now always written. PROBIT is accepted by TreeEnsemble*, LinearClassifier and LinearRegressor.
    """
    families = [("random_tree", random_tree_case, 20), ("random_linear", random_linear_case, 12),
                ("random_svm", random_svm_case, 20)]
    for f, (prefix, make, count) in enumerate(families, start=1):
        REJECTED[prefix] = []
        for i in range(count):
            name = f"{prefix}_{i:02d}"
            for attempt in range(10):
                seed = 1000 * f + 10 * i + attempt
                model, feeds, note = make(np.random.default_rng(seed), i)
                try:
                    write_case(name, model, feeds, f"seed {seed}: {note}")
                    break
                except Exception as err:
                    if not type(err).__module__.startswith("onnxruntime"):
                        raise
                    reason = str(err).splitlines()[0][:300]
                    REJECTED[prefix].append((name, seed, reason))
                    shutil.rmtree(os.path.join(OUT, name), ignore_errors=True)
            else:
                raise RuntimeError(f"{name}: onnxruntime refused 10 draws: {REJECTED[prefix][-1]}")


# ----------------------------------------------------------------------------------------------


def write_readme():
    lines = ["# ai.onnx.ml fixtures", "",
             "Reference cases for Sluice's ai.onnx.ml operators and string tensors: Sluice's outputs are "
             "compared with onnxruntime's. Generated once and committed; do not edit by hand. Regenerate "
             "from the repo root with", "", "    python3 tools/make_ml_fixtures.py", "",
             f"(onnx {onnx.__version__}, onnxruntime {ort.__version__}, skl2onnx {__import__('skl2onnx').__version__}, "
             f"scikit-learn {__import__('sklearn').__version__}; `lgbm_int3` also needs lightgbm and onnxmltools). "
             "All randomness is seeded: a rerun with the same versions writes the same bytes.", "",
             "Groups:", "",
             "- scikit-learn classifiers exported by skl2onnx with default options (`logreg_*`, `linearsvc_*`, "
             "`svc_*`, `svcprob_*`, `rf_*`, `extratrees_*`, `gb_*`, `knn_*`, `mlp_*`, `pipeline_*`): `_str3` "
             "3 string classes, `_int2` binary 0/1, `_int3` 3 int classes, `_str2` binary strings;",
             "- regressors (`linreg`, `svr`, `rfreg`, `gbreg`, `rfreg_2targets`);",
             "- transforms alone (`scaler`, `normalizer_*`, `binarizer`, `imputer_mean`, `onehot_*`) and "
             "hand-built nodes (`labelencoder_*`, `arrayfeatureextractor`, `featurevectorizer`);",
             "- tree ensemble attribute forms (`rf_double_ml3`, `rfreg_double_ml3`: ai.onnx.ml 3 "
             "`*_as_tensor` float64 attributes with float64 input; `lgbm_int3`: LightGBM via onnxmltools);",
             "- seeded random single-node graphs, differential (`random_tree_*`, `random_linear_*`, "
             "`random_svm_*`); each note gives the seed and the attributes drawn.", "",
             "Each `<case>/` holds `model.onnx` and `expected.json` (`inputs`, `outputs` in graph order, "
             "`note`, and `zipmap` where an output is a ZipMap: that output is stored as float32 [N, C] "
             "with columns in the listed key order). Tensors are `{dtype, shape, values}` with values "
             "flat and row-major; every float is written as text (Python's shortest round-tripping "
             "form, or \"nan\"/\"inf\"/\"-inf\"), so a reader parses it exactly. "
             "Expected outputs are onnxruntime's (CPUExecutionProvider, one intra-op thread). "
             "`cases.json` lists the cases.", "", "## Cases", ""]
    for name in sorted(CASES):
        lines.append(f"- `{name}`: {NOTES[name]}")
    lines += ["", "## Random graphs onnxruntime refused (redrawn with the next seed)", ""]
    for prefix, rejected in REJECTED.items():
        lines.append(f"- {prefix}: {len(rejected)} refused")
        for name, seed, reason in rejected:
            lines.append(f"  - {name} seed {seed}: {reason}")
    if SURPRISES:
        lines += ["", "## Exporter notes", ""] + [f"- {s}" for s in SURPRISES]
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    classifiers()
    regressors()
    transforms()
    tree_forms()
    random_graphs()
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(sorted(CASES), f, indent=1)
        f.write("\n")
    write_readme()
    total = sum(os.path.getsize(os.path.join(d, n)) for d, _, files in os.walk(OUT) for n in files)
    print(f"{len(CASES)} cases, {total / 1024:.0f} KiB under {os.path.relpath(OUT, ROOT)}")
    for prefix, rejected in REJECTED.items():
        print(f"{prefix}: onnxruntime refused {len(rejected)}: " + "; ".join(f"{n}@{s}: {r[:120]}" for n, s, r in rejected))
    for s in SURPRISES:
        print(s)


if __name__ == "__main__":
    main()
