#!/usr/bin/env python3
"""Checks cerm checkpoints and exports with independent Python readers (h5py, safetensors).

Not part of CI. Usage:
  scripts/check_checkpoint.py CHECKPOINT.h5 [EXPORT_DIR]
Needs: pip install h5py numpy (and safetensors for EXPORT_DIR).
The function read_cerm_checkpoint is copied verbatim from docs/CHECKPOINT.md; keep them equal.
"""
import sys

import json, struct
import h5py, numpy as np

def read_cerm_checkpoint(path):
    """Returns a dict with the training state of a cerm-checkpoint v1 or v2 file; raises on a bad checksum."""
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "cerm-checkpoint", f.attrs.get("format")
        version = int(f.attrs["format_version"][0])
        assert version in (1, 2), version
        attr = lambda k: int(f.attrs[k][0])
        text = lambda k: bytes(f[k][()]).decode("utf-8")
        groups = {}
        for group, names in (("model", "meta/model_names"), ("optim/m", "meta/optim_m_names"),
                             ("optim/v", "meta/optim_v_names")):
            groups[group] = [(n, np.asarray(f[group][n][()], dtype="<f4")) for n in json.loads(text(names))]
        s = dict(step=attr("step"), policy_version=attr("policy_version"), adam_step=attr("adam_step"),
                 data_epoch=attr("data_epoch"), data_position=attr("data_position"),
                 data_permutation_seed=attr("data_permutation_seed"),
                 rng=[int(x) for x in f["state/rng"][()]], tensors=groups,
                 config_toml=text("meta/config_toml"), model_config=json.loads(text("meta/model_config_json")),
                 tokenizer=text("meta/tokenizer"), extra=json.loads(text("meta/extra_json")))
        raw = {k: bytes(f[k][()]) for k in ("meta/config_toml", "meta/model_config_json",
                                             "meta/tokenizer", "meta/extra_json")}
        stored = attr("checksum")
        tokenizer_part = b""
        if version >= 2:
            if "tokenizer" not in f:
                tokenizer_part = struct.pack("<Q", 0)
            else:
                g = f["tokenizer"]
                def field(b):
                    return struct.pack("<Q", 0) if b is None else struct.pack("<QQ", 1, len(b)) + b
                data = lambda k: bytes(g[k][()]) if k in g else None
                attr_text = lambda k: g.attrs[k].encode() if k in g.attrs else None
                tokenizer_part = struct.pack("<Q", 1) + b"".join(field(b) for b in (
                    data("tokenizer_json"), attr_text("bos_token"), attr_text("eos_token"), attr_text("pad_token"),
                    attr_text("unk_token"), attr_text("chat_template"), data("chat_template_system"),
                    data("chat_template_jinja")))

    h = 0xCBF29CE484222325
    def feed(b):
        nonlocal h
        for byte in b:
            h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    u64 = lambda x: feed(struct.pack("<Q", x & 0xFFFFFFFFFFFFFFFF))
    def string(b): u64(len(b)); feed(b)
    string(b"cerm-checkpoint"); u64(version)
    for k in ("step", "policy_version", "adam_step", "data_epoch", "data_position", "data_permutation_seed"):
        u64(s[k])
    u64(len(s["rng"])); [u64(w) for w in s["rng"]]
    for group, tensors in groups.items():
        string(group.encode()); u64(len(tensors))
        for name, a in tensors:
            string(name.encode()); u64(a.ndim); [u64(d) for d in a.shape]
            data = a.tobytes(order="C"); u64(len(data)); feed(data)
    for k in ("meta/config_toml", "meta/model_config_json", "meta/tokenizer", "meta/extra_json"):
        string(raw[k])
    feed(tokenizer_part)
    if h != stored:
        raise ValueError(f"{path}: checksum mismatch (stored {stored:016x}, computed {h:016x})")
    return s


def check_export(export_dir, state):
    import os
    from safetensors.numpy import load_file
    loaded = load_file(os.path.join(export_dir, "model.safetensors"))
    expected = dict(state["tensors"]["model"])
    assert sorted(loaded) == sorted(expected), (sorted(loaded), sorted(expected))
    for name, array in expected.items():
        got = loaded[name]
        assert got.dtype == np.float32 and got.shape == array.shape, (name, got.dtype, got.shape, array.shape)
        assert got.tobytes() == array.tobytes(), name
    config = json.load(open(os.path.join(export_dir, "config.json")))
    assert config.get("torch_dtype") == "float32", config
    for key, value in state["model_config"].items():
        assert config[key] == value, key
    print(f"{export_dir}: safetensors and config.json match ({len(expected)} tensors)")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    state = read_cerm_checkpoint(sys.argv[1])
    counts = {g: len(t) for g, t in state["tensors"].items()}
    print(f"{sys.argv[1]}: checksum OK, step {state['step']}, policy v{state['policy_version']}, tensors {counts}")
    if len(sys.argv) == 3:
        check_export(sys.argv[2], state)
