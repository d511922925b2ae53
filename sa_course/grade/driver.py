"""The grader's helper inside the learner's kernel: it calls the learner's functions, nothing else.

The grader sends this file's source to the kernel after the learner's cells have run, and
then one request per call: ``__sa_grader__(globals(), '<json>')``. The helper decodes the
inputs (``.npy`` bytes, read with ``allow_pickle=False``), calls the learner's function,
and writes the result to ``.sa-grader-<n>.json`` in the kernel's working directory:
arrays as ``.npy`` bytes of a plain copy (the learner's dtype kept), containers as
containers, anything else by its type name, plus the current contents of every array it
was sent (so the grader sees a write into an input) and, for each returned array, which
inputs it shares memory with.

Nothing here is trusted. The learner's code ran first and may have changed anything in
this process, this helper included; the grader checks every byte that comes back and
computes the verdict in its own process. It imports only the standard library and NumPy.
"""


def _make_grader_call():
    import base64
    import io
    import json
    import os
    import traceback

    import numpy as np

    received = {}          # the grader's arrays, by the grader's id
    objects = []           # everything returned to the grader, by index: passed back by reference
    budget = {"nodes": 0}

    def load(text):
        return np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False).copy()

    def dump(arr):
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        return base64.b64encode(buf.getvalue()).decode("ascii")

    def decode(node):
        if "a" in node:
            if "npy" in node:
                received[node["a"]] = load(node["npy"])
            return received[node["a"]]
        if "k" in node:
            return objects[node["k"]]
        if "v" in node:
            return node["v"]
        if "t" in node:
            return tuple(decode(v) for v in node["t"])
        if "l" in node:
            return [decode(v) for v in node["l"]]
        return {decode(k): decode(v) for k, v in node["d"]}

    def encode(obj, depth=0):
        budget["nodes"] += 1
        if obj is None or type(obj) in (bool, int, float) or (type(obj) is str and len(obj) < 1000):
            return {"v": obj}
        k = len(objects)
        objects.append(obj)
        if depth > 16 or budget["nodes"] > 10000:
            return {"k": k, "o": type(obj).__name__}
        if isinstance(obj, np.ndarray):
            try:
                npy = dump(np.array(obj, copy=True, subok=False))
            except Exception:
                return {"k": k, "o": f"ndarray of dtype {obj.dtype}"}
            shares = [aid for aid, arr in received.items() if np.shares_memory(obj, arr)]
            return {"k": k, "npy": npy, "s": shares}
        if type(obj) in (tuple, list):
            return {"k": k, "t" if type(obj) is tuple else "l": [encode(v, depth + 1) for v in obj]}
        if type(obj) is dict:
            return {"k": k, "d": [[encode(key, depth + 1), encode(v, depth + 1)] for key, v in obj.items()]}
        return {"k": k, "o": type(obj).__name__}

    def where(tb):
        """The learner's innermost frame: not this helper, not site-packages, not a --strict stub."""
        kept = [(frame, line) for frame, line in traceback.walk_tb(tb)
                if not frame.f_globals.get("__sa_grader_stub__")]
        frames = [f for f in traceback.StackSummary.extract(iter(kept))
                  if f.filename != "<sa-grader-driver>" and "site-packages" not in f.filename]
        if not frames:
            return ""
        f = frames[-1]
        src = f" `{f.line.strip()}`" if f.line else ""
        return f"\n  at line {f.lineno} of your {f.name}:{src}"

    def grader_call(namespace, request):
        req = json.loads(request)
        out = {"token": req["token"], "n": req["n"]}
        if req["op"] == "probe":
            out["names"] = {name: [name in namespace, callable(namespace.get(name)), type(namespace.get(name)).__name__]
                            for name in req["names"]}
        else:
            budget["nodes"] = 0
            args = [decode(a) for a in req["args"]]
            kwargs = {key: decode(v) for key, v in req["kwargs"].items()}
            try:
                result = namespace[req["name"]](*args, **kwargs)
            except BaseException as exc:
                out["raised"] = {"type": type(exc).__name__, "message": str(exc)[:4000],
                                 "not_implemented": isinstance(exc, NotImplementedError),
                                 "where": where(exc.__traceback__)[:2000]}
            else:
                out["result"] = encode(result)
            out["echo"] = {str(aid): dump(arr) for aid, arr in received.items()}
        path = os.path.join(req["dir"], f".sa-grader-{req['n']}.json")
        with open(path + ".part", "w") as f:
            json.dump(out, f)
        os.replace(path + ".part", path)

    return grader_call
