#!/usr/bin/env python3
"""Train the two BasicMotions models on the TRAIN split and export them as ONNX.

pipelines/models/basicmotions-cnn.onnx (quickstart model)
    BatchNormalization (fixed: train-set per-channel mean/var of the raw input)
    -> Conv(6->16,k5,p2) -> BatchNormalization -> Relu -> MaxPool(k2,s2)
    -> Conv(16->32,k5,p2) -> BatchNormalization -> Relu -> GlobalAveragePool
    -> Flatten -> Gemm(32->4) -> Softmax.
    Trained end to end: a small numpy training loop with manual backprop through
    both convolutions, both batch norms (batch statistics while training; final
    statistics re-estimated over a fixed set of training windows) and the head;
    Adam, cross-entropy. BatchNormalization nodes are kept, not folded.

pipelines/models/basicmotions-mlp.onnx (heavier model for multi-stage examples)
    Flatten -> Gemm(600->1024) -> Relu -> MatMul(1024->1024) + Add -> Relu
    -> Gemm(1024->512) -> Relu -> Gemm(512->4) -> Softmax.
    Trained with sklearn MLPClassifier on standardized flattened windows; the
    standardization is folded into the first Gemm.

Both: input "window" float32 [N, 6, 100] (channels first), output "scores"
float32 [N, 4] softmax probabilities in class order Badminton, Running,
Standing, Walking (metadata_props "classes"). Opset 17, IR version 8.

Augmentation (train split only): each epoch cuts 100-step windows from
(a) the 10 train cases of one class concatenated in random order, and
(b) two random train cases concatenated (any classes), labelled by majority,
ties -> class of the last sample, as the streamed windows are labelled.

Then checks both models with onnx.checker and onnxruntime and reports accuracy
on the 40 test cases and on the streamed windows (100 steps, hop 50, per sensor)
of pipelines/data/basicmotions-test.csv; writes pipelines/models/ACCURACY.md.

Run from the repo root:  python3 tools/train_models.py
"""
import os

# One BLAS thread: reproducible sums, and leaves the other core alone.
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import sys
import time
import warnings

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.dont_write_bytecode = True  # keep tools/ free of __pycache__
import basicmotions as bm  # noqa: E402  (tools/basicmotions.py)

SEED = 20240601
EPS = 1e-5
OPSET = 17
IR_VERSION = 8
NC = len(bm.CLASSES)
CNN_PATH = os.path.join(bm.MODELS_DIR, "basicmotions-cnn.onnx")
MLP_PATH = os.path.join(bm.MODELS_DIR, "basicmotions-mlp.onnx")


# ---------------------------------------------------------------- augmentation
def augment(X, y, rng, n_class_windows, n_pair_windows):
    """Cut windows from per-class concatenations and from random case pairs."""
    W = bm.WINDOW
    xs, ys = [], []
    for i in range(n_class_windows):
        c = i % NC
        cases = rng.permutation(np.flatnonzero(y == c))
        stream = np.concatenate([X[k] for k in cases], axis=1)
        s = rng.integers(0, stream.shape[1] - W + 1)
        xs.append(stream[:, s:s + W])
        ys.append(c)
    for _ in range(n_pair_windows):
        a, b = rng.integers(0, len(X), size=2)
        stream = np.concatenate([X[a], X[b]], axis=1)
        s = rng.integers(0, W + 1)  # samples taken from b: s
        lab = np.array([y[a]] * (W - s) + [y[b]] * s)
        xs.append(stream[:, s:s + W])
        ys.append(bm.window_label(lab))
    return np.stack(xs), np.array(ys, dtype=np.int64)


# ------------------------------------------------------------ numpy 1D CNN
def conv_fwd(x, w, pad):
    B, C, L = x.shape
    M, _, K = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad)))
    Lo = L + 2 * pad - K + 1
    cols = np.stack([xp[:, :, j:j + Lo] for j in range(K)], axis=-1)  # B,C,Lo,K
    cm = cols.transpose(0, 2, 1, 3).reshape(B * Lo, C * K)
    out = (cm @ w.reshape(M, C * K).T).reshape(B, Lo, M).transpose(0, 2, 1)
    return np.ascontiguousarray(out), (cm, x.shape, pad)


def conv_bwd(dout, w, cache):
    cm, (B, C, L), pad = cache
    M, _, K = w.shape
    Lo = dout.shape[2]
    d = dout.transpose(0, 2, 1).reshape(B * Lo, M)
    dw = (d.T @ cm).reshape(M, C, K)
    dcols = (d @ w.reshape(M, C * K)).reshape(B, Lo, C, K).transpose(0, 2, 1, 3)
    dxp = np.zeros((B, C, L + 2 * pad))
    for j in range(K):
        dxp[:, :, j:j + Lo] += dcols[..., j]
    return dxp[:, :, pad:pad + L], dw


def bn_fwd(x, g, b, stats=None):
    if stats is None:
        mean, var = x.mean(axis=(0, 2)), x.var(axis=(0, 2))
    else:
        mean, var = stats
    inv = 1.0 / np.sqrt(var + EPS)
    xh = (x - mean[None, :, None]) * inv[None, :, None]
    return g[None, :, None] * xh + b[None, :, None], (xh, inv)


def bn_bwd(dy, g, cache):
    xh, inv = cache
    n = dy.shape[0] * dy.shape[2]
    dg = (dy * xh).sum(axis=(0, 2))
    db = dy.sum(axis=(0, 2))
    dxh = dy * g[None, :, None]
    dx = (inv[None, :, None] / n) * (
        n * dxh - dxh.sum(axis=(0, 2))[None, :, None]
        - xh * (dxh * xh).sum(axis=(0, 2))[None, :, None])
    return dx, dg, db


class CNN:
    def __init__(self, rng, mu0, var0):
        he = lambda shape, fan_in: rng.normal(0, np.sqrt(2.0 / fan_in), shape)
        self.mu0, self.var0 = mu0, var0
        self.p = {
            "w1": he((16, 6, 5), 30), "g1": np.ones(16), "b1": np.zeros(16),
            "w2": he((32, 16, 5), 80), "g2": np.ones(32), "b2": np.zeros(32),
            "wf": rng.normal(0, np.sqrt(1.0 / 32), (NC, 32)), "bf": np.zeros(NC),
        }
        self.bn1 = self.bn2 = None  # inference statistics

    def forward(self, x, train):
        p, c = self.p, {}
        x0 = (x - self.mu0[None, :, None]) / np.sqrt(self.var0 + EPS)[None, :, None]
        h, c["c1"] = conv_fwd(x0, p["w1"], 2)
        if train:
            self.last_h1 = h
        h, c["bn1"] = bn_fwd(h, p["g1"], p["b1"], None if train else self.bn1)
        c["r1"] = h > 0
        h = h * c["r1"]
        B, C, L = h.shape
        hr = h.reshape(B, C, L // 2, 2)
        c["mp"] = hr[..., 0] >= hr[..., 1]  # ONNX MaxPool: first max wins a tie
        h = hr.max(axis=-1)
        h, c["c2"] = conv_fwd(h, p["w2"], 2)
        if train:
            self.last_h2 = h
        h, c["bn2"] = bn_fwd(h, p["g2"], p["b2"], None if train else self.bn2)
        c["r2"] = h > 0
        h = h * c["r2"]
        c["L2"] = h.shape[2]
        f = h.mean(axis=2)
        c["f"] = f
        return f @ p["wf"].T + p["bf"], c

    def backward(self, dlogits, c):
        p, g = self.p, {}
        g["wf"] = dlogits.T @ c["f"]
        g["bf"] = dlogits.sum(axis=0)
        df = dlogits @ p["wf"]
        dh = np.repeat(df[:, :, None], c["L2"], axis=2) / c["L2"]
        dh = dh * c["r2"]
        dh, g["g2"], g["b2"] = bn_bwd(dh, p["g2"], c["bn2"])
        dh, g["w2"] = conv_bwd(dh, p["w2"], c["c2"])
        m = c["mp"]
        dh = np.stack([dh * m, dh * ~m], axis=-1).reshape(dh.shape[0], dh.shape[1], -1)
        dh = dh * c["r1"]
        dh, g["g1"], g["b1"] = bn_bwd(dh, p["g1"], c["bn1"])
        _, g["w1"] = conv_bwd(dh, p["w1"], c["c1"])
        return g

    def fit_bn_stats(self, x):
        """Re-estimate the inference BN statistics over a fixed set of windows."""
        self.forward(x, train=True)
        h1 = self.last_h1
        self.bn1 = (h1.mean(axis=(0, 2)), h1.var(axis=(0, 2)))
        # second BN sees the first one in inference mode
        self.bn2, saved = None, self.bn2
        p = self.p
        x0 = (x - self.mu0[None, :, None]) / np.sqrt(self.var0 + EPS)[None, :, None]
        h, _ = bn_fwd(conv_fwd(x0, p["w1"], 2)[0], p["g1"], p["b1"], self.bn1)
        h = np.maximum(h, 0)
        h = h.reshape(h.shape[0], h.shape[1], -1, 2).max(axis=-1)
        h2 = conv_fwd(h, p["w2"], 2)[0]
        self.bn2 = (h2.mean(axis=(0, 2)), h2.var(axis=(0, 2)))

    def predict(self, x):
        logits, _ = self.forward(x, train=False)
        return softmax(logits)


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def train_cnn(X, y, rng, epochs=300, batch=64, lr=3e-3, wd=1e-4):
    mu0 = X.mean(axis=(0, 2))
    var0 = X.var(axis=(0, 2))
    net = CNN(rng, mu0, var0)
    m = {k: np.zeros_like(v) for k, v in net.p.items()}
    v = {k: np.zeros_like(v) for k, v in net.p.items()}
    b1, b2, step = 0.9, 0.999, 0
    for ep in range(epochs):
        xa, ya = augment(X, y, rng, 256, 256)
        xa = xa * rng.uniform(0.9, 1.1, size=(len(xa), 1, 1))  # amplitude jitter
        order = rng.permutation(len(xa))
        rate = lr * 0.5 * (1 + np.cos(np.pi * ep / epochs))  # cosine decay
        loss_sum = 0.0
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            logits, cache = net.forward(xa[idx], train=True)
            prob = softmax(logits)
            loss_sum += -np.log(prob[np.arange(len(idx)), ya[idx]] + 1e-12).sum()
            d = prob.copy()
            d[np.arange(len(idx)), ya[idx]] -= 1
            grads = net.backward(d / len(idx), cache)
            step += 1
            for k, gk in grads.items():
                if k.startswith("w"):
                    gk = gk + wd * net.p[k]
                m[k] = b1 * m[k] + (1 - b1) * gk
                v[k] = b2 * v[k] + (1 - b2) * gk * gk
                mh = m[k] / (1 - b1 ** step)
                vh = v[k] / (1 - b2 ** step)
                net.p[k] -= rate * mh / (np.sqrt(vh) + 1e-8)
        if ep % 50 == 0 or ep == epochs - 1:
            print("  cnn epoch %3d  loss %.4f" % (ep, loss_sum / len(order)))
    xs, _ = augment(X, y, np.random.default_rng(SEED + 1), 1024, 1024)
    net.fit_bn_stats(xs)
    return net


# ----------------------------------------------------------------- ONNX export
def f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def io_info():
    inp = helper.make_tensor_value_info("window", TensorProto.FLOAT, ["N", 6, bm.WINDOW])
    out = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", NC])
    return inp, out


def finish_model(graph, doc):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="sluice-tools", doc_string=doc)
    model.ir_version = IR_VERSION
    for k, val in (("classes", ",".join(bm.CLASSES)),
                   ("channels", ",".join(bm.CHANNELS)),
                   ("window", str(bm.WINDOW)), ("sample_rate_hz", "10"),
                   ("dataset", "BasicMotions (UEA/UCR), train split")):
        e = model.metadata_props.add()
        e.key, e.value = k, val
    onnx.checker.check_model(model, full_check=True)
    return model


def cnn_to_onnx(net):
    p = net.p
    init = [numpy_helper.from_array(f32(a), n) for n, a in [
        ("in_bn.scale", np.ones(6)), ("in_bn.bias", np.zeros(6)),
        ("in_bn.mean", net.mu0), ("in_bn.var", net.var0),
        ("conv1.weight", p["w1"]),
        ("bn1.scale", p["g1"]), ("bn1.bias", p["b1"]),
        ("bn1.mean", net.bn1[0]), ("bn1.var", net.bn1[1]),
        ("conv2.weight", p["w2"]),
        ("bn2.scale", p["g2"]), ("bn2.bias", p["b2"]),
        ("bn2.mean", net.bn2[0]), ("bn2.var", net.bn2[1]),
        ("fc.weight", p["wf"]), ("fc.bias", p["bf"]),
    ]]
    bn = lambda name, x, y: helper.make_node(
        "BatchNormalization", [x, name + ".scale", name + ".bias", name + ".mean",
                               name + ".var"], [y], name=name, epsilon=EPS)
    conv = lambda name, x, y: helper.make_node(
        "Conv", [x, name + ".weight"], [y], name=name, kernel_shape=[5], pads=[2, 2],
        strides=[1], dilations=[1], group=1)
    nodes = [
        bn("in_bn", "window", "x_norm"),
        conv("conv1", "x_norm", "conv1_out"),
        bn("bn1", "conv1_out", "bn1_out"),
        helper.make_node("Relu", ["bn1_out"], ["relu1_out"], name="relu1"),
        helper.make_node("MaxPool", ["relu1_out"], ["pool1_out"], name="pool1",
                         kernel_shape=[2], strides=[2]),
        conv("conv2", "pool1_out", "conv2_out"),
        bn("bn2", "conv2_out", "bn2_out"),
        helper.make_node("Relu", ["bn2_out"], ["relu2_out"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["relu2_out"], ["gap_out"], name="gap"),
        helper.make_node("Flatten", ["gap_out"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc",
                         transB=1),
        helper.make_node("Softmax", ["logits"], ["scores"], name="softmax", axis=1),
    ]
    inp, out = io_info()
    graph = helper.make_graph(nodes, "basicmotions_cnn", [inp], [out], init)
    return finish_model(graph, "BasicMotions 1D CNN (numpy backprop, train split). "
                        "Input: 100 samples x 6 IMU channels at 10 Hz.")


def train_mlp(X, y, rng):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    xa, ya = augment(X, y, rng, 1200, 1200)
    xa = xa.reshape(len(xa), -1)
    mu, sd = xa.mean(axis=0), xa.std(axis=0) + 1e-6
    clf = MLPClassifier(hidden_layer_sizes=(1024, 1024, 512), activation="relu",
                        solver="adam", alpha=1e-3, batch_size=128, learning_rate_init=1e-3,
                        max_iter=40, random_state=SEED % (2 ** 31), verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit((xa - mu) / sd, ya)
    assert list(clf.classes_) == list(range(NC))
    print("  mlp: %d iterations, final loss %.4f" % (clf.n_iter_, clf.loss_))
    return clf, mu, sd


def mlp_to_onnx(clf, mu, sd):
    W, b = clf.coefs_, clf.intercepts_
    # fold standardization: ((x - mu) / sd) @ W0 + b0 = x @ (W0 / sd) + (b0 - (mu / sd) @ W0)
    w0 = W[0] / sd[:, None]
    b0 = b[0] - (mu / sd) @ W[0]
    init = [numpy_helper.from_array(f32(a), n) for n, a in [
        ("fc1.weight", w0.T), ("fc1.bias", b0),        # Gemm transB=1: [1024, 600]
        ("fc2.weight", W[1]), ("fc2.bias", b[1]),      # MatMul + Add: [1024, 1024]
        ("fc3.weight", W[2].T), ("fc3.bias", b[2]),    # Gemm transB=1: [512, 1024]
        ("fc4.weight", W[3].T), ("fc4.bias", b[3]),    # Gemm transB=1: [4, 512]
    ]]
    gemm = lambda name, x, y: helper.make_node(
        "Gemm", [x, name + ".weight", name + ".bias"], [y], name=name, transB=1)
    nodes = [
        helper.make_node("Flatten", ["window"], ["flat"], name="flatten", axis=1),
        gemm("fc1", "flat", "fc1_out"),
        helper.make_node("Relu", ["fc1_out"], ["relu1_out"], name="relu1"),
        helper.make_node("MatMul", ["relu1_out", "fc2.weight"], ["fc2_mm"], name="fc2"),
        helper.make_node("Add", ["fc2_mm", "fc2.bias"], ["fc2_out"], name="fc2_bias"),
        helper.make_node("Relu", ["fc2_out"], ["relu2_out"], name="relu2"),
        gemm("fc3", "relu2_out", "fc3_out"),
        helper.make_node("Relu", ["fc3_out"], ["relu3_out"], name="relu3"),
        gemm("fc4", "relu3_out", "logits"),
        helper.make_node("Softmax", ["logits"], ["scores"], name="softmax", axis=1),
    ]
    inp, out = io_info()
    graph = helper.make_graph(nodes, "basicmotions_mlp", [inp], [out], init)
    return finish_model(graph, "BasicMotions MLP 600-1024-1024-512-4 (sklearn, train "
                        "split; input standardization folded into fc1).")


# ------------------------------------------------------------------ evaluation
def run_onnx(path, x):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return sess.run(["scores"], {"window": f32(x)})[0]


def n_params(model):
    return int(sum(np.prod(t.dims) for t in model.graph.initializer))


def main():
    t_start = time.time()
    Xtr, ytr = bm.load_split("train")
    Xte, yte = bm.load_split("test")
    wins, wlab, keys = bm.streamed_windows()
    mixed = np.array([k[2] for k in keys])
    os.makedirs(bm.MODELS_DIR, exist_ok=True)
    print("classes (output order): %s" % ",".join(bm.CLASSES))
    print("train %s, test %s, streamed windows %s" % (Xtr.shape, Xte.shape, wins.shape))

    print("training CNN (numpy backprop) ...")
    net = train_cnn(Xtr, ytr, np.random.default_rng(SEED))
    cnn = cnn_to_onnx(net)
    onnx.save(cnn, CNN_PATH)
    ref = net.predict(Xte)

    print("training MLP (sklearn) ...")
    clf, mu, sd = train_mlp(Xtr, ytr, np.random.default_rng(SEED + 2))
    mlp = mlp_to_onnx(clf, mu, sd)
    onnx.save(mlp, MLP_PATH)
    ref_mlp = clf.predict_proba((Xte.reshape(len(Xte), -1) - mu) / sd)

    rows = []
    for name, path, model, ref_p, how in [
        ("basicmotions-cnn.onnx", CNN_PATH, cnn, ref,
         "1D CNN, numpy Adam + manual backprop, 300 epochs of augmented windows"),
        ("basicmotions-mlp.onnx", MLP_PATH, mlp, ref_mlp,
         "sklearn MLPClassifier (1024,1024,512) relu, Adam, standardization folded"),
    ]:
        onnx.checker.check_model(path, full_check=True)
        p_case = run_onnx(path, Xte)
        p_win = run_onnx(path, wins)
        diff = float(np.abs(p_case - ref_p).max())
        acc_case = float((p_case.argmax(1) == yte).mean())
        acc_win = float((p_win.argmax(1) == wlab).mean())
        ok_mixed = int((p_win.argmax(1) == wlab)[mixed].sum())
        size = os.path.getsize(path)
        print("%s: %d params, %.2f MB, onnxruntime vs training framework max |diff| %.2e"
              % (name, n_params(model), size / 1e6, diff))
        print("  test-case accuracy %d/%d = %.1f%%, streamed-window accuracy %d/%d = %.1f%%"
              " (single-class windows %d/%d, two-class windows %d/%d)"
              % ((p_case.argmax(1) == yte).sum(), len(yte), 100 * acc_case,
                 (p_win.argmax(1) == wlab).sum(), len(wlab), 100 * acc_win,
                 (p_win.argmax(1) == wlab)[~mixed].sum(), (~mixed).sum(),
                 ok_mixed, mixed.sum()))
        assert diff < 1e-3, "onnxruntime disagrees with the trained model"
        rows.append((name, acc_case, acc_win, ok_mixed, n_params(model), size, how))

    # Rows and sections other scripts wrote (train_forest.py's row, the ECG and power sections)
    # stay as they are.
    accuracy_path = os.path.join(bm.MODELS_DIR, "ACCURACY.md")
    old = open(accuracy_path).read().split("\n") if os.path.exists(accuracy_path) else []
    ours = {name for name, *_ in rows}
    others = [l for l in old if l.startswith("| basicmotions-") and l.split(" | ")[0][2:] not in ours]
    later = next((i for i, l in enumerate(old) if l.startswith("# ") and i > 0), len(old))
    with open(accuracy_path, "w") as f:
        f.write("# BasicMotions models\n\n"
                "Written by `tools/train_models.py` (trained on the BasicMotions TRAIN split "
                "only). Input `window` float32 [N, 6, 100] (acc x/y/z, gyr x/y/z; 100 samples "
                "at 10 Hz), output `scores` float32 [N, 4] softmax over "
                "%s.\n\n" % ", ".join(bm.CLASSES))
        f.write("- Test cases: the 40 TEST-split recordings, one window each.\n"
                "- Streamed windows: 100 samples, hop 50, per sensor from "
                "`pipelines/data/basicmotions-test.csv` (72 windows); label = majority of "
                "the window's samples, ties -> label of the last sample. %d of them are "
                "exactly half one class and half another (the label is then the later "
                "class, which a model that pools over time can only guess).\n\n"
                % mixed.sum())
        f.write("| model | test-case accuracy | streamed-window accuracy | of which "
                "two-class | params | size | how trained |\n|---|---|---|---|---|---|---|\n")
        for name, a, w, okm, n, size, how in rows:
            f.write("| %s | %.1f%% (%d/40) | %.1f%% (%d/%d) | %d/%d | %d | %.2f MB | %s |\n"
                    % (name, 100 * a, round(a * 40), 100 * w, round(w * len(wlab)),
                       len(wlab), okm, mixed.sum(), n, size / 1e6, how))
        f.write("".join(l + "\n" for l in others))
        if later < len(old):
            f.write("\n" + "\n".join(old[later:]).rstrip("\n") + "\n")
    print("wrote %s (%.0f s)" % (os.path.relpath(os.path.join(bm.MODELS_DIR, "ACCURACY.md"),
                                                  bm.ROOT), time.time() - t_start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
