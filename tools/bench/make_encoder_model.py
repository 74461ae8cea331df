#!/usr/bin/env python3
"""Build the BERT-style encoder benchmark model with transformers and torch.onnx.export.

encoder.onnx  BertModel at MiniLM's width (hidden 384, 12 heads, intermediate 1536), 4 layers,
              vocab 1000, random weights (nothing downloaded), sequence fixed at 128, batch
              dynamic; inputs input_ids and attention_mask int64 [N, 128], output
              last_hidden_state [N, 128, 384]. Exported with dynamo=False, opset 17.

Needs tools/requirements-exporters.txt. Usage: make_encoder_model.py OUTPUT_DIR
"""
import os
import sys

import torch
from transformers import BertConfig, BertModel

SEQUENCE = 128


class Encoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    config = BertConfig(hidden_size=384, num_hidden_layers=4, num_attention_heads=12, intermediate_size=1536,
                        vocab_size=1000, max_position_embeddings=SEQUENCE)
    model = Encoder(BertModel(config, add_pooling_layer=False)).eval()
    ids = torch.randint(1, 1000, (2, SEQUENCE))
    mask = torch.ones(2, SEQUENCE, dtype=torch.int64)
    path = os.path.join(out, "encoder.onnx")
    torch.onnx.export(model, (ids, mask), path, dynamo=False, opset_version=17, input_names=["input_ids", "attention_mask"],
                      output_names=["last_hidden_state"],
                      dynamic_axes={"input_ids": {0: "batch"}, "attention_mask": {0: "batch"}, "last_hidden_state": {0: "batch"}})
    print(path)


if __name__ == "__main__":
    main()
