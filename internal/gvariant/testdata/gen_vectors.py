#!/usr/bin/python3
"""Writes glib_vectors.txt: GVariant serialisations produced and judged by the
real GLib, for the Go tests of this package (which never need Python).

Run with Debian's python3-gi (it needs /usr/bin/python3, which has gi):

    /usr/bin/python3 gen_vectors.py > glib_vectors.txt

Each line is tab-separated:

    normal  TYPE  HEX  JSON   GLib serialised the value (or accepted HEX
                              as normal form); JSON is the value
    reject  TYPE  HEX  -      GLib says HEX is not normal form for TYPE
    lenient TYPE  HEX  CANON  g_variant_is_normal_form accepts HEX, but GLib
                              serialises the value it holds as CANON (GLib
                              2.74 takes an empty tuple with framing offsets
                              as normal form); normal form is CANON

JSON encodes a value by its type: b true/false; y n q i u x t h integers;
d a number, or the hex of its little-endian IEEE bits when not finite;
s o g strings; v {"type": T, "value": V}; m null (nothing) or [V]; ay hex;
other arrays, tuples and dict entries lists (a{KV} a list of [K, V]).

The "reject" lines and some "normal" ones come from deterministic
mutations of the values below (truncations, extensions, changed bytes),
each judged by g_variant_is_normal_form.
"""

import json
import math
import random
import struct
import sys

import gi

gi.require_version("GLib", "2.0")
from gi.repository import GLib  # noqa: E402

VT = GLib.VariantType.new


def type_end(t, i):
    """The index just past the complete type starting at t[i]."""
    c = t[i]
    if c in "am":
        return type_end(t, i + 1)
    if c in "({":
        i += 1
        while t[i] not in ")}":
            i = type_end(t, i)
        return i + 1
    return i + 1


def members(t):
    """The member types of tuple or dict entry type t, as strings."""
    out, i = [], 1
    while i < len(t) - 1:
        j = type_end(t, i)
        out.append(t[i:j])
        i = j
    return out


def build(t, j):
    """The GLib.Variant of type t for the JSON value j."""
    c = t[0]
    simple = {
        "b": GLib.Variant.new_boolean, "y": GLib.Variant.new_byte,
        "n": GLib.Variant.new_int16, "q": GLib.Variant.new_uint16,
        "i": GLib.Variant.new_int32, "u": GLib.Variant.new_uint32,
        "x": GLib.Variant.new_int64, "t": GLib.Variant.new_uint64,
        "h": GLib.Variant.new_handle, "s": GLib.Variant.new_string,
        "o": GLib.Variant.new_object_path, "g": GLib.Variant.new_signature,
    }
    if c in simple:
        return simple[c](j)
    if c == "d":
        if isinstance(j, str):
            j = struct.unpack("<d", bytes.fromhex(j))[0]
        return GLib.Variant.new_double(j)
    if c == "v":
        return GLib.Variant.new_variant(build(j["type"], j["value"]))
    if c == "m":
        elem = t[1:]
        return GLib.Variant.new_maybe(VT(elem), None if j is None else build(elem, j[0]))
    if t == "ay":
        j = list(bytes.fromhex(j))
    if c == "a":
        elem = t[1:]
        return GLib.Variant.new_array(VT(elem), [build(elem, x) for x in j])
    ms = members(t)
    assert len(ms) == len(j), (t, j)
    children = [build(m, x) for m, x in zip(ms, j)]
    if c == "{":
        return GLib.Variant.new_dict_entry(*children)
    return GLib.Variant.new_tuple(*children)


def to_json(v):
    """The JSON value of the GLib.Variant v."""
    t = v.get_type_string()
    c = t[0]
    if c in "bynqiuxthsog":
        return v.unpack()
    if c == "d":
        x = v.get_double()
        return x if math.isfinite(x) else struct.pack("<d", x).hex()
    if c == "v":
        inner = v.get_variant()
        return {"type": inner.get_type_string(), "value": to_json(inner)}
    if c == "m":
        inner = v.get_maybe()
        return None if inner is None else [to_json(inner)]
    if t == "ay":
        return bytes(v.get_data_as_bytes().get_data()).hex()
    return [to_json(v.get_child_value(i)) for i in range(v.n_children())]


def serialise(t, j):
    v = build(t, j)
    data = bytes(v.get_data_as_bytes().get_data())
    back = parse(t, data)
    # Judging it first also marks it trusted, which spares GLib checks that
    # abort on the deepest types.
    assert v.is_normal_form() and back.is_normal_form(), (t, j)
    assert to_json(back) == to_json(v), (t, j)
    return data


def parse(t, data):
    return GLib.Variant.new_from_bytes(VT(t), GLib.Bytes.new(data), False)


def fixed_size(t):
    """The fixed serialised size of t, or 0 if variable."""
    sizes = {"b": 1, "y": 1, "n": 2, "q": 2, "i": 4, "u": 4, "h": 4, "x": 8, "t": 8, "d": 8}
    if t[0] in sizes:
        return sizes[t[0]]
    if t[0] not in "({":
        return 0
    ms = members(t)
    if not ms:
        return 1
    size, align = 0, 1
    for m in ms:
        f = fixed_size(m)
        if f == 0:
            return 0
        a = alignment(m)
        align = max(align, a)
        size = (size + a - 1) // a * a + f
    return (size + align - 1) // align * align


def alignment(t):
    aligns = {"n": 2, "q": 2, "i": 4, "u": 4, "h": 4, "x": 8, "t": 8, "d": 8, "v": 8}
    if t[0] in "am":
        return alignment(t[1:])
    if t[0] in "({":
        return max([alignment(m) for m in members(t)] or [1])
    return aligns.get(t[0], 1)


def every_basic_in_variant():
    return [
        ["b", {"type": "b", "value": True}],
        ["y", {"type": "y", "value": 200}],
        ["n", {"type": "n", "value": -2}],
        ["q", {"type": "q", "value": 65534}],
        ["i", {"type": "i", "value": -100000}],
        ["u", {"type": "u", "value": 4000000000}],
        ["x", {"type": "x", "value": -(2**40)}],
        ["t", {"type": "t", "value": 2**63 + 5}],
        ["h", {"type": "h", "value": 1}],
        ["d", {"type": "d", "value": 2.5}],
        ["s", {"type": "s", "value": "text"}],
        ["o", {"type": "o", "value": "/a/b"}],
        ["g", {"type": "g", "value": "a{sv}"}],
        ["v", {"type": "v", "value": {"type": "s", "value": "inner"}}],
        ["as", {"type": "as", "value": ["x", "yz"]}],
        ["ay", {"type": "ay", "value": "00ff"}],
        ["mt", {"type": "mt", "value": [9]}],
    ]


def cases():
    """(type, JSON value) pairs to serialise with GLib."""
    c = []
    # Every basic type, with edge values.
    c += [("b", False), ("b", True), ("y", 0), ("y", 255)]
    c += [("n", -32768), ("n", 32767), ("q", 0), ("q", 65535)]
    c += [("i", -(2**31)), ("i", 2**31 - 1), ("u", 2**32 - 1), ("h", 0), ("h", -1)]
    c += [("x", -(2**63)), ("x", 2**63 - 1), ("t", 0), ("t", 2**64 - 1)]
    c += [("d", 0.0), ("d", -0.0), ("d", math.pi), ("d", 1e300), ("d", 5e-324), ("d", -1.5)]
    c += [("d", "000000000000f07f"), ("d", "000000000000f8ff"), ("d", "010000000000f07f")]
    c += [("s", ""), ("s", "hello"), ("s", "h\u00e9llo \u2713 \U0001f600"), ("s", "\ufffe")]
    c += [("o", "/"), ("o", "/org/gtk/Foo_1"), ("g", ""), ("g", "a{sv}(ii)as"), ("g", "{sv}")]
    # Variants.
    c += [("v", {"type": "u", "value": 7}), ("v", {"type": "s", "value": "s"})]
    c += [("v", {"type": "v", "value": {"type": "s", "value": "nested"}})]
    c += [("v", {"type": "()", "value": []}), ("v", {"type": "(us)", "value": [1, "x"]})]
    c += [("v", {"type": "ay", "value": ""}), ("v", {"type": "a{sv}", "value": []})]
    c += [("av", []), ("av", [{"type": "y", "value": 1}, {"type": "t", "value": 2}])]
    # Empty containers and the unit type.
    c += [("as", []), ("a{sv}", []), ("ay", ""), ("aay", []), ("()", []), ("a()", [])]
    c += [("a()", [[], []]), ("(())", [[]]), ("a(yy)", []), ("at", []), ("aas", [[]]), ("aay", [""])]
    # Maybes of fixed and variable types.
    c += [("my", None), ("my", [5]), ("ms", None), ("ms", [""]), ("ms", ["x"])]
    c += [("mmy", None), ("mmy", [None]), ("mmy", [[5]]), ("mas", [[]]), ("mas", [["a", "b"]])]
    c += [("m(is)", [[1, "a"]]), ("m(ii)", [[1, 2]]), ("m(ii)", None), ("mv", [{"type": "b", "value": False}])]
    c += [("amy", [None, [1], None]), ("ams", [["a"], None, [""]]), ("(ymx)", [1, None]), ("(ymx)", [1, [2]])]
    c += [("a(ymx)", [[1, None], [2, [3]]]), ("ama(mxy)", [[[]], None]), ("(mxy)", [None, 7])]
    # Arrays.
    c += [("as", ["a", "bc"]), ("ai", [1, -2, 3]), ("ax", [-1, 2**40]), ("ab", [True, False])]
    c += [("ad", [1.0, -2.5]), ("an", [1, -1]), ("aq", [1, 2, 3]), ("ah", [0, 1])]
    c += [("aas", [["a"], [], ["b", "cd"]]), ("aay", ["0102", "", "03"]), ("aax", [[1], [], [2, 3]])]
    c += [("a(say)", [["x", "0102"], ["yz", ""]]), ("a(yt)", [[1, 2], [3, 4]])]
    c += [("a(xs)", [[1, "a"], [2, ""], [3, "bcd"]]), ("ao", ["/", "/a"]), ("ag", ["", "ii"])]
    c += [("a{ss}", [["a", "b"], ["c", "d"]]), ("a{is}", [[1, "a"], [2, "b"]])]
    c += [("a{yv}", [[1, {"type": "s", "value": "x"}]]), ("a{ov}", [["/x", {"type": "b", "value": True}]])]
    c += [("a{sas}", [["k", ["a", "b"]], ["e", []]]), ("a{s(ii)}", [["k", [1, 2]]])]
    c += [("a{sv}", every_basic_in_variant()), ("a{sa{sv}}", [["o", [["i", {"type": "u", "value": 1}]]]])]
    c += [("a{sv}", [["dup", {"type": "s", "value": "1"}], ["dup", {"type": "s", "value": "2"}]])]
    c += [("a{tt}", [[1, 2]]), ("a{bd}", [[True, 0.5]])]
    # Tuples.
    c += [("(sst)", ["a", "b", 1]), ("(si)", ["abc", 5]), ("(is)", [5, "abc"]), ("(yu)", [1, 2])]
    c += [("(uy)", [1, 2]), ("(ybq)", [1, True, 3]), ("(ay)", ["01"]), ("(sas)", ["a", ["b", "c"]])]
    c += [("(asas)", [["a"], ["b", "c"]]), ("((()))", [[[]]]), ("(y()y)", [1, [], 2]), ("(yv)", [1, {"type": "y", "value": 2}])]
    c += [("(vy)", [{"type": "y", "value": 2}, 1]), ("(syasy)", ["a", 1, ["b"], 2]), ("(xy)", [1, 2])]
    c += [("(a{sv}aya(say)sstayay)", commit_like())]
    c += [("(uuua(ayay))", [0, 0, 0xED410000, [["75736572", "7879"]]])]
    c += [("(a(say)a(sayay))", [[], []])]
    c += [("(a(say)a(sayay))", [[["a", "00" * 32], ["b", "11" * 32]], [["d", "22" * 32, "33" * 32]]])]
    c += [("(tuuuusa(ayay))", [6, 0, 0, 0x81A40000, 0, "", []])]
    # Dict entries on their own.
    c += [("{sv}", ["k", {"type": "s", "value": "v"}]), ("{ys}", [1, "a"]), ("{is}", [1, "a"]), ("{yy}", [1, 2])]
    # The vectors of /work/shared/reference/ostree-format.md.
    c += [("a{sv}", [["k", {"type": "s", "value": "v"}]])]
    c += [("a{sv}", [["dk", {"type": "s", "value": "dv"}], ["dk2", {"type": "s", "value": "dv2"}]])]
    # Offset width boundaries: 255 bytes in all needs 1-byte offsets, 257 needs 2.
    c += [("as", ["a" * 253]), ("as", ["a" * 254]), ("(ss)", ["a" * 252, ""]), ("(ss)", ["a" * 253, ""])]
    c += [("as", ["%03d" % i for i in range(100)]), ("aay", ["ab" * 300, ""])]
    # Dictionaries big enough for 2-byte and 4-byte offsets.
    c += [("a{sv}", [["key%03d" % i, {"type": "s", "value": "v" * (i % 7)}] for i in range(300)])]
    c += [("(sa{sv})", ["x", [["key%02d" % i, {"type": "s", "value": chr(ord("a") + i % 26) * 2000}] for i in range(35)]])]
    # Nesting near the depth limit (GLib allows 128 containers in a type).
    c += [("a" * 127 + "y", nested_list(126, "05")), ("a" * 128 + "y", []), ("a" * 128 + "y", nested_list(127, ""))]
    c += [("v", nested_variant(126, "y", 5)), ("v", nested_variant(125, "ay", "05"))]
    return c


def nested_list(n, inner):
    for _ in range(n):
        inner = [inner]
    return inner


def nested_variant(n, t, inner):
    v = {"type": t, "value": inner}
    for _ in range(n):
        v = {"type": "v", "value": v}
    return v


def commit_like():
    manifest = json.dumps({"schemaVersion": 2, "layers": [{"digest": "sha256:" + "ab" * 32, "size": 123}]})
    return [
        [
            ["ostree.manifest-digest", {"type": "s", "value": "sha256:" + "cd" * 32}],
            ["ostree.manifest", {"type": "s", "value": manifest}],
            ["ostree.ref-binding", {"type": "as", "value": ["ostree/container/image/x"]}],
        ],
        "", [], "subject", "body", 1700000000, "12" * 32, "34" * 32,
    ]


def raw_candidates():
    """Hand-made byte strings for GLib to judge, most of them damaged."""
    deep_v = b"\x05\0y" + b"\0v" * 127  # 128 variants around a byte
    deep_a = b"\x05" + bytes(range(1, 128))  # 128 arrays around a byte
    return [
        ("v", deep_v), ("v", deep_v[:-2]), ("a" * 128 + "y", deep_a), ("a" * 127 + "y", deep_a[:-1]),
        ("v", b"\0a()" + b"\0v" * 126), ("v", b"\0a()" + b"\0v" * 127),  # 127, 128 variants around a()
        ("as", b"a" * 253 + bytes.fromhex("00 fe00")),  # offsets wider than needed
        ("(ss)", b"a" * 252 + bytes.fromhex("00 00 fd00")),
        ("as", bytes.fromhex("6100620004 02")),  # decreasing offsets
        ("as", bytes.fromhex("610062000102")),  # overlapping elements
        ("as", bytes.fromhex("6100620002 09")),  # offset out of range
        ("a(xs)", bytes.fromhex("0100000000000000 6100 010000000000 0200000000000000 00 0a 19")),  # bad padding
        ("a(xs)", bytes.fromhex("0100000000000000 6100 000000000000 0200000000000000 00 0a 19")),
        ("(uy)", bytes.fromhex("0100000002000100")), ("(uy)", bytes.fromhex("0100000002000000")),
        ("b", b"\x02"), ("s", b"a"), ("s", b"a\0b\0"), ("s", b"\xff\0"), ("o", b"/a/\0"), ("o", b"a\0"),
        ("o", b"/a//b\0"), ("o", b"/a-b\0"), ("g", b"m\0"), ("g", b"a\0"), ("g", b"(\0"), ("g", b"{vs}\0"),
        ("v", b"\x07\0\0\0\0u"), ("v", b"\x07\0\0\0\0uu"), ("v", b"\x07\0\0\0\0"), ("v", b"\x07\0\0\0\0r"),
        ("v", b"\x07\0\0\0u"), ("v", b"\x07\0\0\0\0\0u"), ("ay", b""), ("at", b"\0" * 12), ("a()", b"\1"),
        ("()", b"\0"), ("()", b"\1"), ("my", b"\1"), ("ms", b"a\0\1"), ("ms", b"a\0"), ("ms", b"\0"),
        ("a{sv}", bytes.fromhex("6b00000000000000 760000730e 0d")),  # key offset past the entry
    ]


def mutations(data, rng):
    """Byte strings near data: the kinds of damage decoders must catch."""
    out = set()
    n = len(data)
    if n:
        out.update([data[:-1], data[: n // 2], data[1:]])
        for _ in range(min(n, 12)):
            i = rng.randrange(n)
            for b in (0, 1, 0xFF, data[i] ^ 1, data[i] + 1 & 0xFF, data[i] - 1 & 0xFF):
                out.add(data[:i] + bytes([b]) + data[i + 1 :])
            out.add(data[:i] + data[i + 1 :])
            out.add(data[:i] + b"\0" + data[i:])
    out.update([data + b"\0", data + b"\1", b"", b"\0"])
    out.discard(data)
    return sorted(out)


def main():
    rng = random.Random(20240601)
    seen = set()

    def judge(t, m):
        """Writes GLib's verdict on m as type t, once per (t, m)."""
        if (t, m) in seen:
            return
        seen.add((t, m))
        fixed = fixed_size(t)
        # GLib stores a fixed-size value of the wrong size as a default
        # value instead of judging it; such input is never normal form.
        if fixed and len(m) != fixed:
            sys.stdout.write("reject\t%s\t%s\t-\n" % (t, m.hex()))
            return
        v = parse(t, m)
        if v.is_normal_form():
            j = to_json(v)
            canonical = bytes(build(t, j).get_data_as_bytes().get_data())
            if canonical == m:
                sys.stdout.write("normal\t%s\t%s\t%s\n" % (t, m.hex(), json.dumps(j)))
            else:
                sys.stdout.write("lenient\t%s\t%s\t%s\n" % (t, m.hex(), canonical.hex()))
        else:
            sys.stdout.write("reject\t%s\t%s\t-\n" % (t, m.hex()))

    for t, m in raw_candidates():
        judge(t, m)
    for t, j in cases():
        data = serialise(t, j)
        judge(t, data)
        # Small values only, and not the deepest types: GLib aborts when
        # asked for children of damaged values nested that deep.
        if len(data) <= 400 and len(t) < 100:
            for m in mutations(data, rng):
                judge(t, m)


if __name__ == "__main__":
    main()
