"""Tokens alone (broadcaster.auth.tokens and broadcaster.auth.jwks): what a claim grants,
prefixes, every way a token is refused, the JWKS sources (a fake fetch and a fake clock
for the URL's rate limit, a real file for the file's rotation), and legacy tokens.

On real front-ends, with a JWKS served over HTTP and tokens from Node's ``jose``:
tests/integration/test_jwt.py."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import secrets
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from broadcaster import mint_token
from broadcaster.auth import credentials, jwks, tokens
from broadcaster.auth.jwks import FileKeys, TokenVerifier, UrlKeys
from broadcaster.auth.tokens import Grant, InvalidToken
from tests.support import long_form
from tests.support.jwt_keys import claims, hmac_with, new_key, unsigned
from tests.support.jwt_keys import jwks as jwks_doc

pytestmark = pytest.mark.anyio

SECRET = secrets.token_hex(32)
OLD_SECRET = secrets.token_hex(32)


def verifier(**kw: object) -> TokenVerifier:
    return TokenVerifier([SECRET], **kw)  # type: ignore[arg-type]


# --- what a claim grants ---


def test_exact_entries_and_prefix_entries() -> None:
    grant = Grant(read=("job-42", "jobs-user42-*", "docs/abc*"))
    assert grant.allows("read", "job-42")
    assert not grant.allows("read", "job-4") and not grant.allows("read", "job-421")
    assert grant.allows("read", "jobs-user42-a") and grant.allows("read", "jobs-user42-")
    assert not grant.allows("read", "jobs-user43-a")
    assert grant.allows("read", "docs/abc") and grant.allows("read", "docs/abc/fork-1")
    assert not grant.allows("publish", "job-42"), "each right has its own entries"
    # A prefix request is covered by a prefix entry that is as long or shorter, never
    # by an exact entry.
    assert grant.allows_prefix("read", "jobs-user42-")
    assert grant.allows_prefix("read", "jobs-user42-x")
    assert not grant.allows_prefix("read", "jobs-user4")
    assert not grant.allows_prefix("read", "job-42"), "an exact entry covers no prefix"
    assert Grant(read=("*",)).allows_prefix("read", "")
    assert not Grant(read=("job-42",)).allows_prefix("read", "job-42")


def test_claims_are_parsed_strictly() -> None:
    grant = tokens.grant_of({"sub": "u1", "broadcaster": {"read": ["a"], "chat": ["c"], "x": 1}})
    assert grant == Grant("u1", read=("a",), chat=("c",)), "unknown keys are ignored"
    assert tokens.grant_of({}) == Grant(), "no claim: nothing granted"
    for bad in (
        {"broadcaster": ["a"]},
        {"broadcaster": {"read": "a"}},
        {"broadcaster": {"read": ["a", ""]}},
        {"broadcaster": {"publish": [1]}},
        {"sub": "x" * 257},
        {"sub": 42},
    ):
        with pytest.raises(InvalidToken):
            tokens.grant_of(bad)


def test_shapes_tell_jwts_legacy_tokens_and_keys_apart() -> None:
    token = mint_token(SECRET, read=["a"], ttl_seconds=60)
    legacy, _ = credentials.mint_legacy_token("v1", SECRET, "a", 60)
    assert tokens.shape(token) == "jwt"
    assert tokens.shape(legacy) == "legacy"
    assert tokens.shape(credentials.mint_legacy_token("c1", SECRET, "a", 60)[0]) == "legacy"
    for key in ("admin-0123456789abcdef", "sk_live_abc.def", "v1.x.y", "eyJ", ""):
        assert tokens.shape(key) == "other", key


def test_mint_token_is_a_standard_hs256_jwt() -> None:
    token = mint_token(
        SECRET,
        read=["job-42", "jobs-u-*"],
        cancel=["job-42"],
        sub="user-42",
        ttl_seconds=120,
        audience="https://broadcaster.example",
        now=1_000_000,
    )
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    payload = jwt.decode(
        token,
        SECRET,
        algorithms=["HS256"],
        audience="https://broadcaster.example",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert payload == {
        "iat": 1_000_000,
        "exp": 1_000_120,
        "sub": "user-42",
        "aud": "https://broadcaster.example",
        "broadcaster": {"read": ["job-42", "jobs-u-*"], "cancel": ["job-42"]},
        "jti": payload["jti"],
    }
    assert isinstance(payload["jti"], str) and len(payload["jti"]) >= 16
    with pytest.raises(TypeError):
        mint_token(SECRET, read="job-42", ttl_seconds=60)
    for ttl in (0, -1, True):
        with pytest.raises(ValueError):
            mint_token(SECRET, read=["a"], ttl_seconds=ttl)


def test_viewer_tokens_are_jwts_of_one_right_and_chat_tokens_of_the_uses_asked() -> None:
    viewer, expires = credentials.mint_viewer_token(SECRET, "s1", 60, sub="u")
    assert expires - time.time() == pytest.approx(60, abs=2)
    assert jwt.decode(viewer, SECRET, algorithms=["HS256"])["broadcaster"] == {"read": ["s1"]}
    chat, _ = credentials.mint_chat_token(SECRET, "c1", 60)
    claim = {"chat_read": ["c1"], "chat_submit": ["c1"], "cancel": ["c1"]}
    assert jwt.decode(chat, SECRET, algorithms=["HS256"])["broadcaster"] == claim
    reader, _ = credentials.mint_chat_token(SECRET, "c1", 60, uses=["read"])
    assert jwt.decode(reader, SECRET, algorithms=["HS256"])["broadcaster"] == {"chat_read": ["c1"]}
    assert credentials.verify_chat_token(SECRET, reader, "c1")
    assert credentials.verify_viewer_token(SECRET, viewer, "s1")
    assert not credentials.verify_viewer_token(SECRET, viewer, "s2")
    assert not credentials.verify_viewer_token(SECRET, chat, "c1")
    assert credentials.verify_chat_token(SECRET, chat, "c1")
    assert not credentials.verify_chat_token(SECRET, viewer, "s1")
    assert not credentials.verify_viewer_token(OLD_SECRET, viewer, "s1")
    assert credentials.verify_viewer_token(SECRET, viewer, "s1", now=time.time() + 50)
    assert not credentials.verify_viewer_token(SECRET, viewer, "s1", now=time.time() + 70)


# --- refused tokens ---


async def test_hs256_tokens_verify_under_every_secret_of_a_rotation() -> None:
    both = TokenVerifier([SECRET, OLD_SECRET])
    old = mint_token(OLD_SECRET, read=["a"], sub="u", ttl_seconds=60)
    assert await both.grant(old) == Grant("u", read=("a",))
    with pytest.raises(InvalidToken, match="signature"):
        await verifier().grant(old)


async def test_expired_not_yet_valid_and_future_iat_are_refused_with_leeway() -> None:
    v = verifier(leeway=5)
    now = time.time()
    cases = {
        "expired": {"exp": int(now - 10)},
        "nbf": {"exp": int(now + 60), "nbf": int(now + 30)},
        "iat": {"exp": int(now + 60), "iat": int(now + 30)},
        "no exp": {},
    }
    for why, payload in cases.items():
        with pytest.raises(InvalidToken):
            await v.grant(jwt.encode(payload, SECRET, algorithm="HS256"))
        assert why
    # Within the leeway: a clock a little behind or ahead is forgiven.
    skewed = {"exp": int(now - 2), "nbf": int(now + 2), "iat": int(now + 2)}
    assert await v.grant(jwt.encode(skewed, SECRET, algorithm="HS256")) == Grant()


async def test_audience_is_checked_when_configured_and_any_aud_refused_otherwise() -> None:
    ours = "https://broadcaster.example"
    with_aud = verifier(audience=ours)
    good = mint_token(SECRET, read=["a"], ttl_seconds=60, audience=ours)
    assert (await with_aud.grant(good)).read == ("a",)
    for token in (
        mint_token(SECRET, read=["a"], ttl_seconds=60, audience="https://other.example"),
        mint_token(SECRET, read=["a"], ttl_seconds=60),  # no aud at all
    ):
        with pytest.raises(InvalidToken, match=r"(?i)aud"):
            await with_aud.grant(token)
    with pytest.raises(InvalidToken, match="audience"):
        await verifier().grant(good)


def test_an_empty_aud_is_refused_with_or_without_an_audience() -> None:
    """PyJWT takes ``""``, ``[]`` and ``null`` for no audience at all, and an empty
    string beside ours in a list for ours: each is refused here, whether or not an
    audience is configured."""
    ours = "https://broadcaster.example"
    now = time.time()
    for aud in ("", [], [""], [ours, ""], ["", ours], None, 0, False, {}, [ours, 1]):
        token = jwt.encode({"exp": int(now + 60), "aud": aud}, SECRET, algorithm="HS256")
        for audience in (None, ours):
            with pytest.raises(InvalidToken, match=r"(?i)aud"):
                tokens.decode(token, SECRET, "HS256", audience=audience)
    for aud in (ours, [ours], [ours, "https://other.example"]):
        token = jwt.encode({"exp": int(now + 60), "aud": aud}, SECRET, algorithm="HS256")
        assert tokens.decode(token, SECRET, "HS256", audience=ours) == Grant()
    with pytest.raises(ValueError, match="audience"):
        mint_token(SECRET, read=["a"], ttl_seconds=60, audience="")


def test_times_are_finite_numbers() -> None:
    """PyJWT reads ``int(exp)``, so it takes ``"9999999999"`` or ``true``; RFC 7519 says
    a NumericDate is a JSON number. Checked at the clock's time and at a given one."""
    now = time.time()
    exp = int(now + 60)
    for bad in ({"exp": str(exp)}, {"exp": exp, "iat": "1"}, {"exp": exp, "nbf": False}):
        token = jwt.encode(bad, SECRET, algorithm="HS256")
        with pytest.raises(InvalidToken, match="number"):
            tokens.decode(token, SECRET, "HS256")
    for special in (math.nan, math.inf):  # json writes NaN and Infinity, and reads them
        token = jwt.encode({"exp": special}, SECRET, algorithm="HS256")
        with pytest.raises(InvalidToken):
            tokens.decode(token, SECRET, "HS256")
        with pytest.raises(InvalidToken, match="finite"):
            tokens.decode(token, SECRET, "HS256", now=now)


def test_a_max_lifetime_refuses_tokens_that_live_longer() -> None:
    """``max_lifetime``: ``exp`` at most that far from now (plus the leeway), and
    ``exp - iat`` at most that long; a token minted for exactly that long passes."""
    now, day = time.time(), 86400

    def decode(payload: dict[str, Any], **kw: Any) -> Grant:
        token = jwt.encode(payload, SECRET, algorithm="HS256")
        return tokens.decode(token, SECRET, "HS256", max_lifetime=day, **kw)

    issued = int(now)
    assert decode({"iat": issued, "exp": issued + day}) == Grant()
    assert decode({"exp": int(now + day + 4)}) == Grant(), "within the leeway"
    with pytest.raises(InvalidToken, match=r"too far ahead: .* at most 86400 s"):
        decode({"exp": int(now + day + 10)})
    with pytest.raises(InvalidToken, match=r"too far ahead"):
        decode({"exp": 2**62})
    with pytest.raises(InvalidToken, match=r"exp - iat is too long"):
        decode({"iat": issued - 3 * day, "exp": issued + 60})
    with pytest.raises(InvalidToken, match=r"too far ahead"):
        decode({"exp": int(now + 30 * day)}, now=now)
    minted = mint_token(SECRET, read=["a"], ttl_seconds=day)
    assert tokens.decode(minted, SECRET, "HS256", max_lifetime=day).read == ("a",)
    # No cap unless asked for (broadcaster.verify_viewer_token, a backend's own check).
    assert tokens.decode(jwt.encode({"exp": 2**62}, SECRET), SECRET, "HS256") == Grant()


async def test_alg_none_tampering_and_other_algorithms_are_refused() -> None:
    v = verifier()
    payload = claims(read=["a"])
    with pytest.raises(InvalidToken, match="not accepted"):
        await v.grant(unsigned(payload))
    good = mint_token(SECRET, read=["a"], ttl_seconds=60)
    head, body, sig = good.split(".")
    flipped = ("B" if sig[0] == "A" else "A") + sig[1:]
    forged_body = jwt.utils.base64url_encode(json.dumps(claims(read=["*"])).encode()).decode()
    for tampered in (
        f"{head}.{forged_body}.{sig}",
        f"{head}.{body}.{flipped}",
        f"{head}.{body}.",
    ):
        with pytest.raises(InvalidToken):
            await v.grant(tampered)
    hs512 = jwt.encode(payload, SECRET, algorithm="HS512")
    with pytest.raises(InvalidToken, match="not accepted"):
        await v.grant(hs512)
    with pytest.raises(InvalidToken):
        await v.grant("eyJ" + "A" * 20_000 + ".x.y")


class FakeFetch:
    """The JWKS a ``UrlKeys`` fetches, and how often it did."""

    def __init__(self, document: dict[str, object]) -> None:
        self.document = document
        self.count = 0
        self.fail = False

    async def __call__(self) -> bytes:
        self.count += 1
        if self.fail:
            raise ConnectionError("down")
        return json.dumps(self.document).encode()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_rs256_es256_and_eddsa_verify_against_the_jwks() -> None:
    keys = [new_key("RS256", "r1"), new_key("ES256", "e1"), new_key("EdDSA", "d1")]
    source = UrlKeys("https://idp.example/jwks", fetch=FakeFetch(jwks_doc(*keys)))
    v = TokenVerifier([], source)
    for key in keys:
        token = key.sign(claims(read=["a"], sub="u-" + key.kid))
        assert await v.grant(token) == Grant("u-" + key.kid, read=("a",))
    # A token of one key's algorithm naming another key's kid is refused.
    with pytest.raises(InvalidToken):
        await v.grant(keys[1].sign(claims(read=["a"]), kid="r1"))
    # HS256 tokens go to the secrets only, and there are none.
    with pytest.raises(InvalidToken, match="no token secret"):
        await v.grant(mint_token(SECRET, read=["a"], ttl_seconds=60))


async def test_algorithm_confusion_a_public_key_is_never_an_hmac_secret() -> None:
    rsa_key = new_key("RS256", "r1")
    source = UrlKeys("https://idp.example/jwks", fetch=FakeFetch(jwks_doc(rsa_key)))
    v = TokenVerifier([SECRET], source)
    # The classic attack: HS256, signed with the public key's PEM (or its JWK) as secret.
    for secret in (rsa_key.public_pem, json.dumps(rsa_key.jwk).encode()):
        forged = hmac_with(secret, claims(read=["a"]), kid="r1")
        with pytest.raises(InvalidToken, match="signature"):
            await v.grant(forged)
    # The other way: an RS256 header on an HMAC signature made with our own secret.
    head = jwt.utils.base64url_encode(b'{"alg":"RS256","kid":"r1"}').decode()
    _, body, sig = mint_token(SECRET, read=["a"], ttl_seconds=60).split(".")
    with pytest.raises(InvalidToken):
        await v.grant(f"{head}.{body}.{sig}")
    # A JWKS that publishes a symmetric key: dropped, it would let anyone sign.
    oct_jwk = {"kty": "oct", "kid": "o1", "k": jwt.utils.base64url_encode(b"k" * 32).decode()}
    assert jwks.parse_jwks(json.dumps(jwks_doc(oct_jwk, rsa_key))) != []
    assert [k.key_id for k in jwks.parse_jwks(json.dumps(jwks_doc(oct_jwk)))] == []


async def test_an_unknown_kid_fetches_again_at_most_once_per_interval() -> None:
    old, new = new_key("ES256", "old"), new_key("ES256", "new")
    fetch, clock = FakeFetch(jwks_doc(old)), Clock()
    source = UrlKeys("https://idp.example/jwks", fetch=fetch, clock=clock, min_interval=30)
    v = TokenVerifier([], source)
    assert (await v.grant(old.sign(claims(read=["a"])))).read == ("a",)
    assert fetch.count == 1
    # Made-up kids, many of them: one fetch for the lot within the interval.
    for i in range(50):
        with pytest.raises(InvalidToken, match="no ES256 key"):
            await v.grant(new_key("ES256", f"made-up-{i}").sign(claims()))
    assert fetch.count == 1, "the first fetch was just now: none within 30 s"
    clock.now += 30
    fetch.document = jwks_doc(old, new)  # the issuer rotates a key in
    assert (await v.grant(new.sign(claims(read=["b"])))).read == ("b",)
    assert fetch.count == 2
    for _ in range(5):
        with pytest.raises(InvalidToken):
            await v.grant(new_key("ES256", "another").sign(claims()))
    assert fetch.count == 2
    # A known kid never fetches; a stale set is fetched again after max_age.
    await v.grant(old.sign(claims()))
    assert fetch.count == 2
    clock.now += source.max_age
    await v.grant(old.sign(claims()))
    assert fetch.count == 3


async def test_a_failed_fetch_keeps_the_keys_and_waits_the_interval() -> None:
    key = new_key("EdDSA", "d1")
    fetch, clock = FakeFetch(jwks_doc(key)), Clock()
    source = UrlKeys("https://idp.example/jwks", fetch=fetch, clock=clock, min_interval=10)
    v = TokenVerifier([], source)
    await v.grant(key.sign(claims()))
    fetch.fail = True
    clock.now += source.max_age
    assert await v.grant(key.sign(claims())) == Grant(), "stale keys still verify"
    assert fetch.count == 2
    with pytest.raises(InvalidToken):
        await v.grant(new_key("EdDSA", "d2").sign(claims()))
    assert fetch.count == 2, "the failed fetch was within the interval"


async def test_a_jwks_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    first, second = new_key("RS256", "k1"), new_key("RS256", "k2")
    path.write_text(json.dumps(jwks_doc(first)))
    v = TokenVerifier([], FileKeys(path, min_interval=3600))
    assert (await v.grant(first.sign(claims(read=["a"])))).read == ("a",)
    with pytest.raises(InvalidToken):
        await v.grant(second.sign(claims()))
    # Rotation: a new file renamed over the old one, as a mounted Secret changes.
    staged = tmp_path / "jwks.json.new"
    staged.write_text(json.dumps(jwks_doc(second)))
    staged.replace(path)
    assert (await v.grant(second.sign(claims(read=["b"])))).read == ("b",)
    with pytest.raises(InvalidToken):
        await v.grant(first.sign(claims()))
    # A broken file keeps the keys held.
    staged.write_text("{not json")
    staged.replace(path)
    assert (await v.grant(second.sign(claims(read=["c"])))).read == ("c",)


# --- legacy tokens ---


def test_legacy_tokens_verify_while_enabled_and_warn_once(caplog: pytest.LogCaptureFixture) -> None:
    legacy, _ = credentials.mint_legacy_token("v1", SECRET, "s1", 60)
    chat, _ = credentials.mint_legacy_token("c1", OLD_SECRET, "c1", 60)
    assert not TokenVerifier([SECRET]).legacy_grants(legacy, "v1", "s1"), "off by default"
    v = TokenVerifier([SECRET, OLD_SECRET], legacy=True)
    jwks._warned.clear()
    with caplog.at_level(logging.WARNING, logger="broadcaster.auth"):
        assert v.legacy_grants(legacy, "v1", "s1")
        assert v.legacy_grants(chat, "c1", "c1"), "under the second secret of a rotation"
        assert not v.legacy_grants(legacy, "v1", "s2")
        assert not v.legacy_grants(legacy, "c1", "s1"), "a viewer token is no chat token"
    warnings = [r for r in caplog.records if "legacy" in r.getMessage()]
    assert len(warnings) == 1 and credentials.LEGACY_TOKENS_UNTIL in warnings[0].getMessage()
    off = TokenVerifier([SECRET], legacy=False)
    assert not off.legacy_grants(legacy, "v1", "s1")
    expired, _ = credentials.mint_legacy_token("v1", SECRET, "s1", 60, now=time.time() - 120)
    assert not v.legacy_grants(expired, "v1", "s1")
    # The max lifetime holds for them too: a legacy token good for a year is refused.
    year, _ = credentials.mint_legacy_token("v1", SECRET, "s1", 365 * 86400)
    assert not v.legacy_grants(year, "v1", "s1")
    unbounded = TokenVerifier([SECRET], legacy=True, max_lifetime=None)
    assert unbounded.legacy_grants(year, "v1", "s1")


# --- whatever a token holds: a Grant or InvalidToken, never another exception ---


def _segment(value: Any) -> str:
    """A JSON value as a base64url segment. Python's json writes NaN and Infinity, and
    PyJWT reads them back, so a stranger's token may hold them too."""
    return jwt.utils.base64url_encode(json.dumps(value).encode()).decode()


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
_raw_segments = st.binary(max_size=40).map(lambda b: jwt.utils.base64url_encode(b).decode())
_well_formed_headers = st.sampled_from(
    [{"alg": "HS256"}, {"alg": "HS256", "typ": "JWT"}, {"alg": "HS256", "kid": "k1"}]
).map(_segment)
_any_headers = (
    st.fixed_dictionaries(
        {},
        optional={
            "alg": st.sampled_from(["HS256", "RS256", "ES256", "EdDSA", "none", "HS512"])
            | _json_values,
            "kid": st.sampled_from(["k1", "", "x" * 300]) | _json_values,
            "typ": _json_values,
            "crit": _json_values,
            "b64": _json_values,
        },
    )
    | _json_values
).map(_segment) | _raw_segments
_NOW = int(time.time())
_times = st.integers(-(2**70), 2**70) | st.floats() | _json_values
_near = st.integers(_NOW - 100, _NOW + 10 * 86400)
_payloads = (
    st.fixed_dictionaries(
        {"exp": _near | _times},
        optional={
            "iat": _near | _times,
            "nbf": _near | _times,
            "aud": st.sampled_from(["", [], [""], ["x", ""], "https://b.example"]) | _json_values,
            "sub": st.sampled_from(["u1", "", "x" * 300]) | _json_values,
            "broadcaster": st.sampled_from([{}, {"read": ["s1"]}, {"read": ["*", ""]}])
            | _json_values,
        },
    )
    | _json_values
).map(_segment) | _raw_segments


@st.composite
def _fuzzed_tokens(draw: st.DrawFn) -> str:
    """Tokens of every kind: headers and payloads of any JSON shape or random bytes, most
    signed with the verifier's own secret so that their claims are checked too. Half the
    headers are well formed, so that the payloads behind them are reached."""
    head = draw(_well_formed_headers if draw(st.booleans()) else _any_headers)
    body = draw(_payloads)
    how = draw(st.sampled_from(["ours", "ours", "random", "empty"]))
    if how == "ours":
        mac = hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
        sig = jwt.utils.base64url_encode(mac).decode()
    else:
        sig = draw(_raw_segments) if how == "random" else ""
    return f"{head}.{body}.{sig}"


_FUZZ_KEY = new_key("ES256", "k1")


@long_form.mark
@settings(
    max_examples=long_form.budget(150, 500),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(_fuzzed_tokens())
@example("eyJhbGciOlsiSFMyNTYiXX0.e30.AA")  # {"alg":["HS256"]}: a 500 a review found
@example(f"{_segment({'alg': {'HS256': 1}})}.e30.AA")
@example(f"{_segment({'alg': 'HS256', 'kid': ['k1']})}.e30.AA")
@example(f"{_segment(['HS256'])}.e30.AA")
@example(f"{_segment({'alg': 'HS256', 'b64': False})}..AA")
@example("eyJ" + "A" * 20_000 + ".e30.AA")
@example("eyJ!!!.e30.AA")
def test_any_token_is_a_grant_or_invalid_token_never_another_error(token: str) -> None:
    """The parser meets tokens before anything is authenticated: every header (``alg`` a
    list, ``kid`` a number, no object at all, bad base64, huge) and every payload
    (times of every type, empty audiences, bad claims), signed with the secret or not,
    gives a Grant or InvalidToken, under a secret, an audience or a JWKS; and
    ``verify_viewer_token`` a bool."""
    source = UrlKeys("https://idp.example/jwks", fetch=FakeFetch(jwks_doc(_FUZZ_KEY)))
    for v in (verifier(), verifier(audience="https://b.example"), TokenVerifier([], source)):
        try:
            result = asyncio.run(v.grant(token))
        except InvalidToken:
            pass
        else:
            assert isinstance(result, Grant)
    assert credentials.verify_viewer_token(SECRET, token, "s1") in (True, False)


def test_a_grant_knows_its_expiry_and_id_which_do_not_change_what_it_opens() -> None:
    token = tokens.mint_token(SECRET, read=["a"], sub="u", ttl_seconds=60, now=time.time())
    grant = tokens.decode(token, SECRET, "HS256")
    assert grant == Grant("u", read=("a",)), "expiry and id are not part of what it opens"
    assert grant.expires is not None and 55 < grant.expires - time.time() <= 60
    assert grant.jti is not None and len(grant.jti) >= 16, "a minted token carries an id"
    other = tokens.decode(tokens.mint_token(SECRET, read=["a"], ttl_seconds=60), SECRET, "HS256")
    assert other.jti != grant.jti
    odd = jwt.encode({"exp": int(time.time()) + 60, "jti": 7}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken):
        tokens.decode(odd, SECRET, "HS256")  # RFC 7519: a jti is a string
