"""A plain-data description of a model: graph, parameters, formats, stored bits."""

from __future__ import annotations

import math

from ..graph.graph import INPUT


def describe(model) -> dict:
    """Describe ``model`` for ``numharden info``.

    Returns
    -------
    dict
        ``arch``, ``input_shape``, ``num_classes``, ``checksum``, ``meta`` (training
        recipe etc.), ``nodes`` (name, op, inputs, output shape, params), ``params``
        (name, shape, format, bits per value, stored bits, scale kind) and totals
        ``n_params`` and ``stored_bits``.
    """
    g = model.graph
    nodes = [{"name": n.name, "op": n.op, "inputs": n.inputs, "output_shape": list(g.shapes[n.name]),
              "params": dict(n.params), "attrs": n.attrs} for n in g.nodes]
    params = []
    for name, st in model.params.items():
        scale = "none" if st.scale is None else ("per-channel" if st.scale.ndim else "per-tensor")
        params.append({"name": name, "shape": list(st.shape), "format": st.fmt.spec,
                       "bits_per_value": st.fmt.bits, "stored_bits": st.n_bits,
                       "storage_dtype": str(st.codes.dtype), "scale": scale})
    return {"arch": model.meta.get("arch"), "input_shape": list(g.shapes[INPUT]),
            "num_classes": g.num_classes, "checksum": model.checksum(),
            "n_params": int(sum(math.prod(p["shape"]) for p in params)),
            "stored_bits": int(sum(p["stored_bits"] for p in params)),
            "nodes": nodes, "params": params,
            "meta": {k: v for k, v in model.meta.items()}}
