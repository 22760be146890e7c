"""External data through fattn-onnx: references beside the output are kept, data elsewhere is
copied into OUT.data, --external-data moves initializers out, in-place rewrites replace their
own data file safely, bad references are errors, and models whose data passes 2 GiB (with
tensors beyond the 2 GiB offset) go through (sparse files keep that test cheap)."""
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from fo_testlib import check, fresh_rng, run_ort, run_tool


def linear_model(rng):
    """y = x @ W + b with a 16 KiB weight and a 256-byte bias."""
    w = numpy_helper.from_array(rng.standard_normal((64, 64)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(64).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"], name="mm"),
         helper.make_node("Add", ["xw", "b"], ["y"], name="add")],
        "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 64])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    return model


def save_external(model, path, location, threshold=1024):
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location=location, size_threshold=threshold)


def external_entries(model):
    return {t.name: {e.key: e.value for e in t.external_data}
            for t in model.graph.initializer if t.data_location == TensorProto.EXTERNAL}


def same_output(a, b, rng):
    x = {"x": rng.standard_normal((2, 64)).astype(np.float32)}
    np.testing.assert_array_equal(run_ort(str(a), x)[0], run_ort(str(b), x)[0])


def test_references_beside_the_output_are_kept(tmp_path):
    rng = fresh_rng("kept")
    src = tmp_path / "m.onnx"
    save_external(linear_model(rng), src, "weights.bin")
    dst = tmp_path / "prepared.onnx"
    run_tool("prepare", src, dst)
    out = check(dst)
    assert external_entries(out)["W"]["location"] == "weights.bin"
    assert not (tmp_path / "prepared.onnx.data").exists()
    same_output(src, dst, rng)


def test_data_is_copied_when_the_output_is_elsewhere(tmp_path):
    rng = fresh_rng("copied")
    src = tmp_path / "m.onnx"
    save_external(linear_model(rng), src, "weights.bin")
    (tmp_path / "out").mkdir()
    dst = tmp_path / "out" / "p.onnx"
    stdout, _ = run_tool("prepare", src, dst)
    assert "copied 1 external tensor(s) into p.onnx.data" in stdout
    out = check(dst)
    assert external_entries(out)["W"]["location"] == "p.onnx.data"
    assert sorted(os.listdir(tmp_path / "out")) == ["p.onnx", "p.onnx.data"]
    same_output(src, dst, rng)


def test_external_data_option_moves_large_initializers(tmp_path):
    rng = fresh_rng("moved")
    src = tmp_path / "inline.onnx"
    onnx.save(linear_model(rng), str(src))
    dst = tmp_path / "ext.onnx"
    stdout, _ = run_tool("prepare", src, dst, "--external-data-threshold", "1000")
    assert "moved 1 initializer(s) to external data ext.onnx.data" in stdout
    out = check(dst)
    entries = external_entries(out)
    assert set(entries) == {"W"} and entries["W"]["length"] == str(64 * 64 * 4)
    assert os.path.getsize(dst) < 4096
    same_output(src, dst, rng)
    full = onnx.load(str(dst))
    orig = onnx.load(str(src))
    for a, b in zip(full.graph.initializer, orig.graph.initializer):
        np.testing.assert_array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b))


def test_typed_fields_are_externalised_as_raw_bytes(tmp_path):
    """Initializers stored in float_data / int64_data (not raw_data) come out byte-exact."""
    rng = fresh_rng("typed")
    model = linear_model(rng)
    w = model.graph.initializer[0]
    values = numpy_helper.to_array(w).copy()
    w.ClearField("raw_data")
    w.float_data.extend(values.ravel().tolist())
    src = tmp_path / "typed.onnx"
    onnx.save(model, str(src))
    dst = tmp_path / "ext.onnx"
    run_tool("prepare", src, dst, "--external-data")
    loaded = onnx.load(str(dst))
    np.testing.assert_array_equal(numpy_helper.to_array(loaded.graph.initializer[0]), values)


def test_in_place_rewrite_replaces_its_own_data_file(tmp_path):
    rng = fresh_rng("in_place")
    src = tmp_path / "m.onnx"
    save_external(linear_model(rng), src, "m.onnx.data")
    ref = tmp_path / "ref.onnx"
    onnx.save(onnx.load(str(src)), str(ref))
    run_tool("prepare", src, src)
    check(src)
    assert sorted(os.listdir(tmp_path)) == ["m.onnx", "m.onnx.data", "ref.onnx"]
    same_output(ref, src, rng)


@pytest.mark.parametrize("edit,message", [
    (lambda e: e.update(location="../outside.bin"), "leaves the model's directory"),
    (lambda e: e.update(location="/etc/passwd"), "absolute"),
    (lambda e: e.update(location="missing.bin"), "cannot open external data"),
    (lambda e: e.update(offset="99999999"), "holds 16384 bytes; the tensor needs offset 99999999"),
    (lambda e: e.update(length="12"), "does not match its dims"),
])
def test_bad_external_references_are_errors(tmp_path, edit, message):
    rng = fresh_rng("bad_ref")
    model = linear_model(rng)
    src = tmp_path / "m.onnx"
    save_external(model, src, "weights.bin")
    loaded = onnx.load(str(src), load_external_data=False)
    t = loaded.graph.initializer[0]
    entries = {e.key: e.value for e in t.external_data}
    edit(entries)
    del t.external_data[:]
    for k, v in entries.items():
        t.external_data.add(key=k, value=v)
    onnx.save(loaded, str(src))
    (tmp_path / "out").mkdir()
    _, err = run_tool("prepare", src, tmp_path / "out" / "p.onnx", expect=1)
    assert "m.onnx: tensor 'W'" in err and message in err, err
    assert os.listdir(tmp_path / "out") == []


GIB = 1 << 30


def big_model(directory, rng):
    """A model whose external data is 2.4 GB: W1 (2.3 GB of uint8, marker bytes at its start,
    past 2 GiB and at its end) and W2 (1024 floats stored past the 2 GiB offset). The data file
    is sparse, so it costs no disk."""
    n1 = 2_300_000_000
    off2 = 2_400_000_000
    w2 = rng.standard_normal(1024).astype(np.float32)
    markers = {0: 7, 2 * GIB + 5: 9, n1 - 1: 11}
    with open(directory / "big.bin", "wb") as f:
        f.truncate(off2 + w2.nbytes)
        for pos, val in markers.items():
            f.seek(pos)
            f.write(bytes([val]))
        f.seek(off2)
        f.write(w2.tobytes())

    def ext(name, dt, dims, offset, length):
        t = TensorProto(name=name, data_type=dt, dims=dims)
        for key, value in (("location", "big.bin"), ("offset", offset), ("length", length)):
            t.external_data.add(key=key, value=str(value))
        t.data_location = TensorProto.EXTERNAL
        return t

    graph = helper.make_graph(
        [helper.make_node("Shape", ["W1"], ["n"], name="shape"),
         helper.make_node("Add", ["x", "W2"], ["y"], name="add")],
        "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1024])],
        [helper.make_tensor_value_info("n", TensorProto.INT64, [1]),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, [1024])],
        [ext("W1", TensorProto.UINT8, [n1], 0, n1), ext("W2", TensorProto.FLOAT, [1024], off2,
                                                        w2.nbytes)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    onnx.save(model, str(directory / "big.onnx"))
    return n1, w2, markers


def read_at(path, offset, n):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(n)


def test_models_with_more_than_2gb_of_data(tmp_path):
    rng = fresh_rng("big")
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    n1, w2, markers = big_model(src_dir, rng)
    src = src_dir / "big.onnx"

    run_tool("prepare", src, src_dir / "same_dir.onnx")
    same = onnx.load(str(src_dir / "same_dir.onnx"), load_external_data=False)
    assert external_entries(same)["W2"] == {"location": "big.bin", "offset": "2400000000",
                                            "length": "4096"}

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dst = out_dir / "big.onnx"
    stdout, _ = run_tool("prepare", src, dst)
    assert "copied 2 external tensor(s) into big.onnx.data" in stdout
    onnx.checker.check_model(str(dst))
    out = onnx.load(str(dst), load_external_data=False)
    e = external_entries(out)
    data = out_dir / "big.onnx.data"
    assert e["W1"]["location"] == "big.onnx.data" and int(e["W1"]["length"]) == n1
    off1, off2 = int(e["W1"]["offset"]), int(e["W2"]["offset"])
    assert off2 >= off1 + n1 > 2 * GIB and off1 % 65536 == 0 and off2 % 64 == 0
    for pos, val in markers.items():
        assert read_at(data, off1 + pos, 1) == bytes([val]), f"W1 byte {pos}"
    assert read_at(data, off1 + 1, 64) == bytes(64)
    assert np.array_equal(np.frombuffer(read_at(data, off2, w2.nbytes), np.float32), w2)
    st = os.stat(data)
    assert st.st_size == off2 + w2.nbytes
    assert st.st_blocks * 512 < 64 << 20, "zero ranges should stay holes in the copy"
