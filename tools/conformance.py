#!/usr/bin/env python3
"""Summarizes a conformance sweep (see tools/conformance.sh) and optionally promotes it.

The report has one line per event: `folder/case<TAB>start`, then `folder/case<TAB>outcome<TAB>detail`
with outcome pass, load, run, mismatch or crash. This prints pass/fail/skip counts per folder,
lists cases whose outcome disagrees with Tests/Fixtures/conformance-cases.json, and with
--promote rewrites that file: passing cases must pass, failing ones are skipped with a reason.

A reason comes, in this order, from CASE_REASONS below (a case whose own data is at fault),
from the kind of case (training, string, sequence/optional, quantized, random, unsupported
element type: found by reading the model with the onnx package), from OP_REASONS below (an
op the case uses), or else from the error the sweep recorded.
"""
import json
import os
import re
import sys
from collections import Counter, OrderedDict

ROOT = "/usr/share/libonnx-testdata/data"
FOLDERS = ["node", "pytorch-converted", "pytorch-operator", "simple"]
CASES_FILE = os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "conformance-cases.json")

TRAINING_OPS = {"Gradient", "Momentum", "Adagrad", "Adam"}
SEQUENCE_OPS = {"SequenceInsert", "SequenceAt", "SequenceLength", "SequenceConstruct", "SequenceEmpty", "SequenceMap",
                "SplitToSequence", "SequenceErase", "ConcatFromSequence", "Optional", "OptionalGetElement",
                "OptionalHasElement"}
STRING_OPS = {"StringNormalizer"}
QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ConvInteger", "MatMulInteger",
                 "QLinearConv", "QLinearMatMul"}
RANDOM_OPS = {"Bernoulli", "RandomUniformLike", "RandomNormalLike", "RandomUniform", "RandomNormal", "Multinomial"}
SUPPORTED_TYPES = {"FLOAT", "DOUBLE", "FLOAT16", "BFLOAT16", "INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32", "UINT16",
                   "UINT8", "BOOL"}

# Why an op outside the categories above is not implemented, by op type (none at present). A
# failing case that uses one of these ops gets its reason; any other failure is described by its error.
OP_REASONS = OrderedDict([
])

# Cases whose own data is at fault, by name.
CASE_REASONS = {
    "node/test_castlike_BFLOAT16_to_FLOAT": "the test data feeds input 'like' as [1] where the model declares [3, 4]",
    "node/test_castlike_FLOAT_to_BFLOAT16": "the test data feeds input 'like' as [1] where the model declares [3, 4]",
}


def load_cases_file():
    """(mustPass list, skipped dict) from Tests/Fixtures/conformance-cases.json."""
    with open(CASES_FILE) as f:
        cases = json.load(f)
    return cases["mustPass"], cases["skipped"]


def read_report(path):
    outcomes = {}
    for line in open(path):
        parts = line.rstrip("\n").split("\t", 2)
        if len(parts) < 2 or parts[1] == "start":
            continue
        outcomes[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
    return outcomes


def model_facts(name):
    """Op types (with domain) and the element/value types of a case's graph inputs and outputs."""
    try:
        import onnx
    except ImportError:
        return set(), set()
    model = onnx.load(os.path.join(ROOT, name, "model.onnx"), load_external_data=False)
    ops = set()

    def walk(graph):
        for node in graph.node:
            ops.add(node.op_type)
            if node.domain not in ("", "ai.onnx"):
                ops.add(node.domain)
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    walk(attribute.g)
    walk(model.graph)
    types = set()
    for value in list(model.graph.input) + list(model.graph.output):
        kind = value.type.WhichOneof("value")
        if kind == "tensor_type":
            types.add(onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type))
        else:
            types.add(kind)
    return ops, types


def category_reason(name):
    case = name.split("/", 1)[1]
    ops, types = model_facts(name)
    if ops & TRAINING_OPS or "ai.onnx.preview.training" in ops or "training" in case:
        return "training: Sluice runs inference only"
    if ops & SEQUENCE_OPS or types & {"sequence_type", "optional_type", "map_type"}:
        return "sequence/optional values: Sluice's values are tensors only"
    if ops & STRING_OPS or "STRING" in types:
        return "string tensors are not supported"
    if ops & QUANTIZED_OPS:
        return "quantized ops are not implemented (float32 first)"
    if ops & RANDOM_OPS:
        return "random output: the recorded sample cannot be reproduced"
    odd = types - SUPPORTED_TYPES - {"sequence_type", "optional_type", "map_type"}
    if odd:
        return "element type %s is not supported (numeric types and bool are)" % ", ".join(sorted(odd)).lower()
    return None


def reason_for(name, detail):
    if name in CASE_REASONS:
        return CASE_REASONS[name]
    category = category_reason(name)
    if category:
        return category
    ops, _ = model_facts(name)
    for op, reason in OP_REASONS.items():
        if op in ops:
            return reason
    detail = re.sub(r"/usr/share/libonnx-testdata/data/[^:]*: ", "", detail)
    return detail[:200] or "fails"


def write_cases_file(must_pass, skipped):
    with open(CASES_FILE, "w") as f:
        json.dump({"mustPass": sorted(must_pass), "skipped": {n: skipped[n] for n in sorted(skipped)}}, f, indent=1, ensure_ascii=False)
        f.write("\n")


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit("usage: conformance.py REPORT [--failures] [--promote]")
    outcomes = read_report(args[0])
    must_pass, skipped = load_cases_file()
    must_set = set(must_pass)

    print("%-18s %6s %6s %6s %6s" % ("folder", "cases", "pass", "skip", "fail"))
    totals = Counter()
    regressions, promotable, unlisted = [], [], []
    for folder in FOLDERS:
        names = [n for n in outcomes if n.startswith(folder + "/")]
        passed = [n for n in names if outcomes[n][0] == "pass"]
        failing = [n for n in names if outcomes[n][0] != "pass"]
        skip = [n for n in failing if n in skipped]
        fail = [n for n in failing if n not in skipped]
        print("%-18s %6d %6d %6d %6d" % (folder, len(names), len(passed), len(skip), len(fail)))
        totals.update(cases=len(names), passed=len(passed), skip=len(skip), fail=len(fail))
        regressions += [n for n in failing if n in must_set]
        promotable += [n for n in passed if n not in must_set]
        unlisted += [n for n in failing if n not in must_set and n not in skipped]
    print("%-18s %6d %6d %6d %6d" % ("total", totals["cases"], totals["passed"], totals["skip"], totals["fail"]))
    for n in regressions:
        print("REGRESSION %s: %s %s" % (n, *outcomes[n]))
    for n in promotable:
        print("now passes: %s" % n)
    for n in unlisted:
        print("failing, not listed: %s" % n)
    if "--failures" in args:
        for n in sorted(outcomes):
            if outcomes[n][0] != "pass":
                print("%s\t%s\t%s" % (n, *outcomes[n]))
    if "--promote" in args:
        new_must = sorted(n for n in outcomes if outcomes[n][0] == "pass")
        new_skipped = {n: reason_for(n, outcomes[n][1]) for n in outcomes if outcomes[n][0] != "pass"}
        write_cases_file(new_must, new_skipped)
        print("wrote %s: %d must pass, %d skipped" % (os.path.normpath(CASES_FILE), len(new_must), len(new_skipped)))
    if regressions:
        sys.exit(1)


if __name__ == "__main__":
    main()
