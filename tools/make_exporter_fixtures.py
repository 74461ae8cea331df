#!/usr/bin/env python3
"""Write the PyTorch-exporter fixtures under Tests/Fixtures/exporters/.

Small PyTorch models shaped like sensor-window classifiers (an MLP, a 1-D CNN, a GRU, a
bidirectional LSTM, a Transformer encoder) and Hugging Face encoders (BERT, DistilBERT and a
MiniLM-sized BERT, attention masks with padding) are each exported twice:

  <model>_script   torch.onnx.export(..., dynamo=False, opset_version=17, dynamic_axes=...)
                   (the TorchScript-based exporter)
  <model>_dynamo   torch.onnx.export(..., dynamo=True, external_data=False)
                   (the torch.export-based exporter, at the opset it picks)

Every weight is random (fixed seeds); nothing is downloaded (the Hugging Face models are built
from config objects, never from_pretrained). Each case is a folder
Tests/Fixtures/exporters/<case>/ holding

  model.onnx         the exported model (self-contained: no external data file)
  expected.json      {"inputs": {NAME: TENSOR}, "outputs": {NAME: TENSOR}, "note": "..."}
                     TENSOR is {"dtype": "float32"|"int64"|..., "shape": [...],
                     "values": [flat, row-major]}. Inputs are what was fed to onnxruntime
                     (batch 3 for the sensor models, batch 8 for the Hugging Face ones);
                     outputs are every graph output, in graph order, as onnxruntime
                     (CPUExecutionProvider, one intra-op thread) returned them. Every float is
                     a string: Python's repr of the value widened to a double, or
                     "nan"/"inf"/"-inf", so it round-trips exactly. Integers are JSON ints.
  expected_b1.json   (Hugging Face cases only) the same at batch 1
  *_NAME.npy         an output of more than 4096 values, which the JSON names ("npy": FILE)

plus Tests/Fixtures/exporters/cases.json (the sorted case names) and
Tests/Fixtures/exporters/README.md (each case, the exporter settings, opsets and op types, and
anything that did not export). All randomness is seeded, so a rerun writes the same values
(the dynamo exporter's model bytes may differ between runs).

This is run once and its output committed; the Swift tests only read the fixtures. Its
dependencies (torch, onnxscript, transformers, onnx, onnxruntime, numpy):

    python3 -m pip install -r tools/requirements-exporters.txt

Run from the repo root:

    python3 tools/make_exporter_fixtures.py
"""
import json
import logging
import os
import shutil
import traceback
import warnings

import numpy as np
import onnx
import onnxruntime as ort

from fixture_json import tensor_json
import torch
from torch import nn

warnings.filterwarnings("ignore")
logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" notes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "exporters")
SENSOR_BATCH = 3
HF_BATCH = 8
SEQ = 128
SCRIPT_OPSET = 17

CASES = []          # case names written
INFO = {}           # case -> dict(note, opsets, ops, size)
FAILED = []         # (case, text)


# ----------------------------------------------------------------------------------------------
# JSON


def _dump(doc):
    """JSON with one line per tensor."""
    def one(v):
        return json.dumps(v, allow_nan=False, separators=(",", ":"))
    lines = ["{"]
    for section in ("inputs", "outputs"):
        items = [f"    {one(k)}: {one(v)}" for k, v in doc[section].items()]
        lines.append(f'  "{section}": {{\n' + ",\n".join(items) + "\n  },")
    lines.append(f'  "note": {one(doc["note"])}')
    lines.append("}")
    return "\n".join(lines) + "\n"


def run_ort(path, feeds):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return names, sess.run(names, feeds)


# Outputs larger than this go to a .npy file beside the JSON (exact and a quarter the size).
LARGEST_JSON_TENSOR = 4096


def output_json(path, name, array):
    a = np.asarray(array)
    if a.size <= LARGEST_JSON_TENSOR:
        return tensor_json(a)
    file = f"{os.path.splitext(os.path.basename(path))[0]}_{name}.npy"
    np.save(os.path.join(os.path.dirname(path), file), a)
    return {"dtype": a.dtype.name, "shape": list(a.shape), "npy": file}


def write_expected(path, model_path, feeds, note):
    names, results = run_ort(model_path, feeds)
    doc = {"inputs": {k: tensor_json(v) for k, v in feeds.items()},
           "outputs": {n: output_json(path, n, r) for n, r in zip(names, results)},
           "note": note}
    with open(path, "w") as f:
        f.write(_dump(doc))
    return dict(zip(names, results))


# ----------------------------------------------------------------------------------------------
# Graph inspection


def op_types(model):
    """{(domain, op_type)} over the main graph, subgraphs and local functions."""
    found = set()

    def walk(nodes):
        for node in nodes:
            found.add((node.domain or "ai.onnx", node.op_type))
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g.node)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    for g in attr.graphs:
                        walk(g.node)
    walk(model.graph.node)
    for fn in model.functions:
        walk(fn.node)
    return found


def opsets(model):
    return sorted(((o.domain or "ai.onnx"), o.version) for o in model.opset_import)


def io_desc(values):
    def dims(v):
        return [d.dim_param if d.HasField("dim_param") else d.dim_value
                for d in v.type.tensor_type.shape.dim]
    return ", ".join(f"{v.name} {onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type).lower()} {dims(v)}"
                     for v in values)


# ----------------------------------------------------------------------------------------------
# Export


def export(kind, module, args, path, input_names, output_names, dyn_axes, dyn_shapes_options):
    """Export with one exporter; returns a note on the settings used."""
    if kind == "script":
        torch.onnx.export(module, args, path, dynamo=False, opset_version=SCRIPT_OPSET,
                          input_names=input_names, output_names=output_names,
                          dynamic_axes=dyn_axes)
        return (f"torch.onnx.export(dynamo=False, opset_version={SCRIPT_OPSET}, "
                f"dynamic_axes={dyn_axes})")
    errors = []
    for label, shapes in dyn_shapes_options:
        try:
            prog = torch.onnx.export(module, args, dynamo=True, external_data=False,
                                     input_names=input_names, output_names=output_names,
                                     dynamic_shapes=shapes)
            prog.save(path, external_data=False)
            note = f"torch.onnx.export(dynamo=True, external_data=False, dynamic_shapes={label})"
            if errors:
                note += "; earlier tries failed: " + " | ".join(errors)
            return note
        except Exception as e:  # try the next (less dynamic) option
            errors.append(f"dynamic_shapes={label}: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
    raise RuntimeError("dynamo export failed for every dynamic_shapes option: " + " | ".join(errors))


def make_case(name, kind, module, args, input_names, output_names, dyn_axes, dyn_shapes_options,
              feeds_list, description):
    """feeds_list: [(file name, feeds)]; the first is expected.json."""
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "model.onnx")
    try:
        settings = export(kind, module, args, path, input_names, output_names, dyn_axes,
                          dyn_shapes_options)
        stray = [f for f in os.listdir(folder) if f != "model.onnx"]
        assert not stray, f"exporter left files beside model.onnx: {stray}"
        model = onnx.load(path)
        onnx.checker.check_model(model)
    except Exception as e:
        text = "".join(traceback.format_exception_only(type(e), e)).strip()
        FAILED.append((name, f"export: {text}"))
        shutil.rmtree(folder, ignore_errors=True)
        print(f"FAILED {name}: {text[:500]}")
        return
    note = f"{description}; {settings}"
    written = []
    for file_name, feeds in feeds_list:
        try:
            got = write_expected(os.path.join(folder, file_name), path, feeds, note)
        except Exception as e:
            text = "".join(traceback.format_exception_only(type(e), e)).strip()
            FAILED.append((name, f"onnxruntime ({file_name}): {text}"))
            print(f"ORT FAILED {name} {file_name}: {text[:500]}")
            continue
        # Compare with PyTorch itself (a sanity check only; the fixture is onnxruntime's).
        with torch.no_grad():
            ref = module(*[torch.from_numpy(feeds[n]) for n in input_names])
        ref = ref if isinstance(ref, tuple) else (ref,)
        diffs = [float(np.max(np.abs(got[n] - r.numpy()))) for n, r in zip(output_names, ref)]
        written.append(f"{file_name} (max |ort - torch| {max(diffs):.2e})")
    if not written:
        shutil.rmtree(folder, ignore_errors=True)
        return
    CASES.append(name)
    INFO[name] = dict(note=note, opsets=opsets(model), ops=sorted(op_types(model)),
                      size=os.path.getsize(path), written=written,
                      inputs=io_desc(model.graph.input), outputs=io_desc(model.graph.output))
    print(f"ok {name}: {written}")


# ----------------------------------------------------------------------------------------------
# Sensor models


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(600, 64), nn.ReLU(), nn.Linear(64, 4), nn.Softmax(dim=-1))

    def forward(self, x):
        return self.net(x)


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(6, 16, 5, padding=2), nn.BatchNorm1d(16), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(16, 32, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
            nn.Linear(32, 4))

    def forward(self, x):
        return self.net(x)


class GRUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(6, 32, num_layers=2, batch_first=True)
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1, :])


class LSTMNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(6, 32, num_layers=1, batch_first=True, bidirectional=True)
        self.head = nn.Linear(64, 4)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1, :])


class TransformerNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(6, 32)
        self.pos = nn.Parameter(torch.randn(1, 50, 32) * 0.1)
        layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        h = self.encoder(self.proj(x) + self.pos)
        return self.head(h.mean(dim=1))


def randomize_batchnorm(module, gen):
    # Fresh BatchNorm stats are 0/1 (an identity); give them values so the fold is exercised.
    for m in module.modules():
        if isinstance(m, nn.BatchNorm1d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


SENSOR_MODELS = [
    ("mlp", MLP, (600,), "MLP on a flattened window: Linear(600,64) ReLU Linear(64,4) Softmax"),
    ("cnn1d", CNN, (6, 100), "1-D CNN: Conv1d(6,16,5,p=2) BatchNorm1d ReLU MaxPool1d(2) "
                             "Conv1d(16,32,5,p=2) ReLU AdaptiveAvgPool1d(1) Flatten Linear(32,4)"),
    ("gru", GRUNet, (100, 6), "GRU(6,32,num_layers=2,batch_first) last step -> Linear(32,4)"),
    ("lstm", LSTMNet, (100, 6), "LSTM(6,32,bidirectional,batch_first) last step -> Linear(64,4)"),
    ("transformer", TransformerNet, (50, 6),
     "Linear(6,32) + learned pos emb [1,50,32], TransformerEncoder(d_model=32, nhead=4, "
     "dim_feedforward=64, batch_first, 2 layers), mean over time, Linear(32,4)"),
]


def sensor_cases():
    for i, (base, cls, feat_shape, desc) in enumerate(SENSOR_MODELS):
        torch.manual_seed(1000 + i)
        gen = torch.Generator().manual_seed(2000 + i)
        module = cls()
        randomize_batchnorm(module, gen)
        module.eval()
        rng = np.random.default_rng(3000 + i)
        x = rng.standard_normal((SENSOR_BATCH,) + feat_shape).astype(np.float32)
        args = (torch.from_numpy(x),)
        batch = torch.export.Dim("batch", min=1, max=4096)
        for kind in ("script", "dynamo"):
            make_case(f"{base}_{kind}", kind, module, args, ["x"], ["y"],
                      {"x": {0: "batch"}, "y": {0: "batch"}},
                      [("{'x': {0: Dim('batch')}}", {"x": {0: batch}}), ("None (fixed batch)", None)],
                      [("expected.json", {"x": x})], desc + f"; input x float32 [N, {', '.join(map(str, feat_shape))}]")


# ----------------------------------------------------------------------------------------------
# Hugging Face encoders


class HFWrapper(nn.Module):
    """Calls the model with keyword arguments and returns its outputs as a tuple."""

    def __init__(self, model, pooled):
        super().__init__()
        self.model = model
        self.pooled = pooled

    def forward(self, input_ids, attention_mask):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        if self.pooled:
            return out.last_hidden_state, out.pooler_output
        return (out.last_hidden_state,)


def hf_feeds(rng, batch, padded_rows):
    ids = rng.integers(1, 1000, size=(batch, SEQ), dtype=np.int64)
    mask = np.ones((batch, SEQ), dtype=np.int64)
    for r in padded_rows:
        pad = int(rng.integers(20, 41))
        mask[r, SEQ - pad:] = 0
        ids[r, SEQ - pad:] = 0  # pad token
    return {"input_ids": ids, "attention_mask": mask}


def hf_models():
    from transformers import BertConfig, BertModel, DistilBertConfig, DistilBertModel
    return [
        ("bert", lambda: BertModel(BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                                              intermediate_size=256, vocab_size=1000)), True,
         "BertModel(hidden 128, 2 layers, 2 heads, intermediate 256, vocab 1000)"),
        ("distilbert", lambda: DistilBertModel(DistilBertConfig(dim=128, n_layers=2, n_heads=2, hidden_dim=256,
                                                                vocab_size=1000)), False,
         "DistilBertModel(dim 128, 2 layers, 2 heads, hidden_dim 256, vocab 1000)"),
        # MiniLM's width (384, 12 heads of 32, intermediate 1536) with one layer and short tables,
        # to keep the committed file small: about 9 MB per exporter.
        ("minilm", lambda: BertModel(BertConfig(hidden_size=384, num_hidden_layers=1, num_attention_heads=12,
                                                intermediate_size=1536, vocab_size=1000, max_position_embeddings=128)), True,
         "MiniLM-sized BertModel(hidden 384, 1 layer, 12 heads, intermediate 1536, vocab 1000, 128 positions)"),
    ]


def hf_cases():
    for i, (base, build, pooled, desc) in enumerate(hf_models()):
        torch.manual_seed(4000 + i)
        model = build()
        model.eval()
        attn = getattr(model.config, "_attn_implementation", None)
        module = HFWrapper(model, pooled).eval()
        rng = np.random.default_rng(5000 + i)
        feeds8 = hf_feeds(rng, HF_BATCH, padded_rows=[1, 3, 4, 6])
        feeds1 = hf_feeds(rng, 1, padded_rows=[0])
        args = tuple(torch.from_numpy(feeds8[n]) for n in ("input_ids", "attention_mask"))
        outs = ["last_hidden_state", "pooler_output"] if pooled else ["last_hidden_state"]
        axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                "last_hidden_state": {0: "batch", 1: "sequence"}}
        if pooled:
            axes["pooler_output"] = {0: "batch"}
        b = torch.export.Dim("batch", min=1, max=1024)
        s = torch.export.Dim("sequence", min=2, max=512)
        shapes = [
            ("{batch, sequence}", {"input_ids": {0: b, 1: s}, "attention_mask": {0: b, 1: s}}),
            ("{batch}", {"input_ids": {0: b}, "attention_mask": {0: b}}),
        ]
        note = (f"{desc}, random weights, attn_implementation={attn}; inputs input_ids/attention_mask "
                f"int64 [B, {SEQ}], some rows padded (last 20-40 mask positions 0, ids 0)")
        for kind in ("script", "dynamo"):
            make_case(f"{base}_{kind}", kind, module, args, ["input_ids", "attention_mask"], outs, axes,
                      shapes, [("expected.json", feeds8), ("expected_b1.json", feeds1)], note)


# ----------------------------------------------------------------------------------------------
# README

UNUSUAL_DOMAINS = {"com.microsoft", "pkg.onnxscript.torch_lib", "pkg.onnxscript.torch_lib.common"}
UNUSUAL_OPS = {"If", "Loop", "Scan", "Attention", "LayerNormalization", "Gelu", "SkipLayerNormalization",
               "GRU", "LSTM", "RNN", "SequenceConstruct", "SequenceAt", "ConcatFromSequence", "Einsum",
               "CumSum", "Trilu", "ScatterND", "Range", "Where", "Expand", "IsNaN", "Erf"}


def write_readme():
    lines = [
        "# PyTorch exporter fixtures",
        "",
        "Written by `tools/make_exporter_fixtures.py` (run once, output committed; the tests only read it).",
        "Regenerate from the repo root:",
        "",
        "    python3 -m pip install -r tools/requirements-exporters.txt",
        "    python3 tools/make_exporter_fixtures.py",
        "",
        f"Made with torch {torch.__version__}, onnx {onnx.__version__}, onnxruntime {ort.__version__}, "
        f"onnxscript {_version('onnxscript')}, transformers {_version('transformers')}.",
        "",
        "Every model is exported twice from the same module and weights (random, seeded):",
        "",
        f"* `<model>_script`: `torch.onnx.export(model, args, path, dynamo=False, opset_version={SCRIPT_OPSET}, "
        "input_names=..., output_names=..., dynamic_axes=...)` (TorchScript exporter; dynamic batch axis, and "
        "dynamic sequence axis for the Hugging Face models).",
        "* `<model>_dynamo`: `torch.onnx.export(model, args, dynamo=True, external_data=False, "
        "dynamic_shapes=...)` then `.save(path, external_data=False)` (torch.export-based exporter at the "
        "opset it picks, optimize=True default). Dynamic batch (and sequence for Hugging Face) where it "
        "exported; the note in expected.json says which.",
        "",
        "`expected.json`: inputs fed and every graph output from onnxruntime (CPUExecutionProvider, "
        "intra_op_num_threads=1), floats as exact strings. Sensor models are fed batch 3; Hugging Face "
        "models batch 8 in `expected.json` and batch 1 in `expected_b1.json`. Hugging Face models are called "
        "through a small wrapper module that passes `input_ids`/`attention_mask` as keywords and returns "
        "`(last_hidden_state, pooler_output)` (BERT) or `(last_hidden_state,)` (DistilBERT) as a tuple.",
        "",
        "## Cases",
        "",
    ]
    for name in CASES:
        info = INFO[name]
        ops = info["ops"]
        flagged = [f"{d}:{o}" for d, o in ops if d in UNUSUAL_DOMAINS or d not in ("ai.onnx",) or o in UNUSUAL_OPS]
        lines += [
            f"### {name}",
            "",
            f"* {info['note']}",
            f"* model.onnx {info['size']} bytes; opsets {', '.join(f'{d} {v}' for d, v in info['opsets'])}",
            f"* inputs: {info['inputs']}",
            f"* outputs: {info['outputs']}",
            f"* written: {', '.join(info['written'])}",
            f"* op types: {', '.join(o if d == 'ai.onnx' else f'{d}:{o}' for d, o in ops)}",
            f"* notable: {', '.join(flagged) if flagged else 'none'}",
            "",
        ]
    lines += ["## Did not export", ""]
    if FAILED:
        for name, text in FAILED:
            lines += [f"### {name}", "", "```", text, "```", ""]
    else:
        lines += ["Nothing: every case exported and ran in onnxruntime.", ""]
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("\n".join(lines))


def _version(mod):
    try:
        return __import__(mod).__version__
    except Exception:
        return "not installed"


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    torch.set_num_threads(1)
    only = os.environ.get("ONLY")  # e.g. ONLY=sensor or ONLY=hf while iterating
    if only in (None, "sensor"):
        sensor_cases()
    if only in (None, "hf"):
        hf_cases()
    CASES.sort()
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        f.write(json.dumps(CASES, indent=1) + "\n")
    write_readme()
    print(f"{len(CASES)} cases written; {len(FAILED)} failures")


if __name__ == "__main__":
    main()
