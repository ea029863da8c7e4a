"""The decision's ``inputHash`` (docs/resuming.md) is the same number on both sides: the
server's (``chat/binding.py``) and the client package's, which the demo chat sends its
decisions with (clients/js, built and run by node),
for inputs where a careless canonical JSON would differ: floats that are integers, small
and large exponents, non-ASCII and control characters, names whose UTF-16 order is not
their code point order, nesting."""

from __future__ import annotations

import json
import subprocess

import pytest

from broadcaster.chat.binding import canonical, input_hash
from tests.support import client_js

INPUTS = [
    {"b": 5, "a": 2, "id": 12345678901234567890},
    {"amount": 1.0, "rate": 0.1, "tiny": 1e-7, "huge": 1e21, "big": 123456789012345680000.0},
    {"text": 'quote " back \\ tab \t nl \n bell \x07 é 日本 😀'},
    {"\U0001f600": 1, "\uff61": 2, "a": 3},  # UTF-16: the surrogate pair sorts first
    {"nested": [{"z": None, "y": [True, False]}, [], {}], "n": -0.5},
]


def test_the_server_and_the_client_package_hash_the_same_input_alike() -> None:
    missing = client_js.missing_prerequisites()
    if missing:
        pytest.fail("this test needs:\n  " + "\n  ".join(missing), pytrace=False)
    module = client_js.built()
    script = (
        f"import {{ canonicalJson as canonical, inputHash }} from {json.dumps(module.as_uri())};\n"
        "const inputs = JSON.parse(process.argv[1]);\n"
        "const out = [];\n"
        "for (const i of inputs) out.push([canonical(i), await inputHash(i)]);\n"
        "process.stdout.write(JSON.stringify(out));\n"
    )
    done = subprocess.run(
        ["node", "--input-type=module", "-e", script, json.dumps(INPUTS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got == [[canonical(i), input_hash(i)] for i in INPUTS]
    assert canonical({"b": 5, "a": 2}) == '{"a":2,"b":5}'
    assert canonical({"x": 1.0, "y": 1e-7, "z": 1e21}) == '{"x":1,"y":1e-7,"z":1e+21}'
