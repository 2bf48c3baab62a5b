"""WorkloadGraph: derived lifetimes, validation, features, batch scaling, JSON round trip and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from marl_gym.envs import NUM_NODE_FEATURES, node_features
from marl_gym.workloads import (
    SCHEMA_VERSION,
    WorkloadError,
    WorkloadGraph,
    build_graph,
    peak_live_activation_bytes,
)


def _rec(name, op="conv", w=1000, out=8000, inp=8000, flops=10**6):
    return {"name": name, "op": op, "weight_bytes": w, "output_bytes": out, "input_bytes": inp, "flops": flops}


def small_graph() -> WorkloadGraph:
    # a -> b -> c -> d, with a residual a -> c; d is the output
    nodes = [_rec("a"), _rec("b"), _rec("c", "add", 0), _rec("d", "linear", 4000, 40, 8000)]
    return build_graph("small", nodes, [(0, 1), (1, 2), (0, 2), (2, 3)], meta={"k": "v"}, output_nodes=[3])


def test_build_graph_derives_lifetimes_and_access():
    g = small_graph()
    assert [n.produced_at for n in g.nodes] == [0, 1, 2, 3]
    assert [n.last_use for n in g.nodes] == [2, 2, 3, 3]
    assert [n.lifetime for n in g.nodes] == [3, 2, 2, 1]
    assert g.nodes[0].access == "strided"
    assert g.nodes[3].access == "sequential"
    assert g.live_matrix()[2].tolist() == [True, True, True, False]
    assert peak_live_activation_bytes(g) == 3 * 8000
    assert g.edge_index().shape == (2, 4)
    assert g.weight_mask.tolist() == [True, True, False, True]
    assert g.total_weight_bytes == 6000


def test_node_features_are_finite_and_shaped():
    f = node_features(small_graph())
    assert f.shape == (4, NUM_NODE_FEATURES) and f.dtype == np.float32
    assert np.isfinite(f).all()


def test_with_batch_size_scales_activations_not_weights():
    g = small_graph()
    g4 = g.with_batch_size(4)
    assert g4.batch_size == 4
    assert g4.total_weight_bytes == g.total_weight_bytes
    assert g4.total_activation_bytes == 4 * g.total_activation_bytes
    assert g4.total_flops == 4 * g.total_flops
    assert g4.with_batch_size(1) == g


@pytest.mark.parametrize(
    ("nodes", "edges", "message"),
    [
        ([_rec("a"), _rec("a")], [], "duplicate node name"),
        ([_rec("a"), _rec("b")], [(1, 0)], "does not follow execution order"),
        ([_rec("a"), _rec("b")], [(0, 5)], "references a missing node"),
        ([_rec("a", op="nope")], [], "node 'a': op must be one of 'conv', .*, got the string 'nope'"),
        ([_rec("a", w=-1)], [], "node 'a': weight_bytes must be an integer >= 0, got -1"),
        ([], [], "has no nodes"),
    ],
)
def test_validation_errors_name_the_problem(nodes, edges, message):
    with pytest.raises(WorkloadError, match=message):
        build_graph("bad", nodes, edges)


def test_activation_read_after_last_use_is_rejected():
    g = small_graph()
    from dataclasses import replace

    nodes = list(g.nodes)
    nodes[0] = replace(nodes[0], last_use=1)  # but node 2 reads it
    with pytest.raises(WorkloadError, match="read at step 2 after its last_use 1"):
        WorkloadGraph("bad", tuple(nodes), g.edges)


def test_json_round_trip(tmp_path):
    g = small_graph()
    path = tmp_path / "g.json"
    g.to_json(path)
    back = WorkloadGraph.from_json(path)
    assert back == g
    assert back.meta == {"k": "v"}
    assert back.nodes[0].weight_names == g.nodes[0].weight_names
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write leaves no temp file behind


def _write(tmp_path, data) -> str:
    path = tmp_path / "g.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_wrong_version_and_malformed_files_raise_clear_errors(tmp_path):
    good = small_graph().to_dict()
    with pytest.raises(WorkloadError, match=r"schema_version 99 is not supported .*versions 1, 2"):
        WorkloadGraph.from_json(_write(tmp_path, {**good, "schema_version": 99}))
    with pytest.raises(WorkloadError, match="schema_version None"):
        WorkloadGraph.from_json(_write(tmp_path, {k: v for k, v in good.items() if k != "schema_version"}))
    with pytest.raises(WorkloadError, match="not valid JSON"):
        WorkloadGraph.from_json(_write(tmp_path, "{not json"))
    with pytest.raises(WorkloadError, match="expected a JSON object"):
        WorkloadGraph.from_json(_write(tmp_path, [1, 2]))
    with pytest.raises(WorkloadError, match=r"missing key\(s\) \['nodes'\]"):
        WorkloadGraph.from_json(_write(tmp_path, {k: v for k, v in good.items() if k != "nodes"}))
    bad_node = json.loads(json.dumps(good))
    bad_node["nodes"][1]["colour"] = "red"
    with pytest.raises(WorkloadError, match="unknown node field"):
        WorkloadGraph.from_json(_write(tmp_path, bad_node))
    bad_edge = json.loads(json.dumps(good))
    bad_edge["edges"].append([3, 9])
    with pytest.raises(WorkloadError, match="references a missing node"):
        WorkloadGraph.from_json(_write(tmp_path, bad_edge))
    with pytest.raises(WorkloadError, match="cannot read workload graph"):
        WorkloadGraph.from_json(tmp_path / "missing.json")


def test_version_1_and_2_files_are_still_read(tmp_path):
    """Schema 1 had no weight_tensor_bytes / part_of, schema 2 no weight reads: their nodes get the defaults
    (a node reads all its own weights, nothing else); an old file with a newer field is rejected."""
    v3 = small_graph().to_dict()
    v2 = json.loads(json.dumps(v3))
    v2["schema_version"] = 2
    for nd in v2["nodes"]:
        del nd["weight_read_bytes"], nd["shared_reads"], nd["gather_bytes"]
    assert WorkloadGraph.from_json(_write(tmp_path, v2)) == small_graph()
    v2["nodes"][0]["shared_reads"] = []
    with pytest.raises(WorkloadError, match=r"unknown node field\(s\) \['shared_reads'\]"):
        WorkloadGraph.from_json(_write(tmp_path, v2))
    v1 = json.loads(json.dumps(v3))
    v1["schema_version"] = 1
    for nd in v1["nodes"]:
        del nd["weight_tensor_bytes"], nd["part_of"], nd["weight_read_bytes"], nd["shared_reads"], nd["gather_bytes"]
    back = WorkloadGraph.from_json(_write(tmp_path, v1))
    assert back == small_graph()
    assert all(n.weight_tensor_bytes == () and n.part_of is None for n in back.nodes)
    v1["nodes"][0]["part_of"] = None
    with pytest.raises(WorkloadError, match=r"unknown node field\(s\) \['part_of'\]"):
        WorkloadGraph.from_json(_write(tmp_path, v1))


def test_weight_reads_are_validated_and_round_trip(tmp_path):
    """Own reads stay within the node's weights; shared reads name an earlier holder of that parameter."""
    emb = {**_rec("emb", w=4000), "weight_names": ("emb.weight",), "weight_read_bytes": 300, "gather_bytes": 100}
    head = {**_rec("head", w=0), "shared_reads": (("emb", "emb.weight", 4000),)}
    g = build_graph("tied", [emb, head], [(0, 1)], output_nodes=[1])
    assert g.nodes[0].own_read_bytes == 300 and g.nodes[1].own_read_bytes == 0
    assert WorkloadGraph.from_json(_write(tmp_path, g.to_dict())) == g
    assert g.with_batch_size(4).nodes[0].weight_read_bytes == 1200  # gathered rows grow with the batch
    assert g.with_batch_size(40).nodes[0].weight_read_bytes == 4000  # never beyond the table
    with pytest.raises(WorkloadError, match="weight_read_bytes 5000 must be in"):
        build_graph("x", [{**emb, "weight_read_bytes": 5000}], [])
    with pytest.raises(WorkloadError, match="not an earlier node"):
        build_graph("x", [head, emb], [(0, 1)])
    with pytest.raises(WorkloadError, match="does not hold that weight"):
        build_graph("x", [emb, {**head, "shared_reads": (("emb", "emb.bias", 10),)}], [(0, 1)])
    with pytest.raises(WorkloadError, match="gather_bytes must be an integer >= 1"):
        build_graph("x", [{**emb, "gather_bytes": 0}], [])


def test_weight_tensor_bytes_and_part_of_are_validated():
    two = {**_rec("a", w=1000), "weight_names": ("a.weight", "a.bias"), "weight_tensor_bytes": (900, 100)}
    g = build_graph("ok", [two], [])
    assert g.nodes[0].weight_tensor_bytes == (900, 100)
    with pytest.raises(WorkloadError, match="must be >= 0 and sum to weight_bytes 1000"):
        build_graph("bad", [{**two, "weight_tensor_bytes": (900, 90)}], [])
    with pytest.raises(WorkloadError, match="2 entries for 1 weight_names"):
        build_graph("bad", [{**two, "weight_names": ("a.weight",)}], [])
    part = {**_rec("a/bias", w=100, out=0, inp=0, flops=0), "part_of": "a"}
    with pytest.raises(WorkloadError, match="no edge joins it to its layer 'a'"):
        build_graph("bad", [part, _rec("a")], [])
    with pytest.raises(WorkloadError, match="part_of 'zz' is not another layer node"):
        build_graph("bad", [{**part, "part_of": "zz"}, _rec("a")], [(0, 1)])
    assert build_graph("ok", [part, _rec("a")], [(0, 1)]).nodes[0].part_of == "a"
