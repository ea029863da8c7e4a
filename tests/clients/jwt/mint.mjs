// Mint tokens with jose, as a Node backend would (docs/security.md). Reads a JSON list on
// stdin, one request each:
//   {"alg": "HS256", "secret": "...", "claims": {...}, "expiresIn": "10m"}
//   {"alg": "RS256" | "ES256" | "EdDSA", "jwk": {private JWK}, "kid": "...", "claims": {...}}
// and prints a JSON list of the tokens, in the same order. "expiresIn" is anything
// setExpirationTime takes (a span like "10m", or an absolute Unix time in seconds).
import { SignJWT, importJWK } from "jose";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const requests = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const tokens = [];
for (const { alg, secret, jwk, kid, claims, expiresIn = "10m" } of requests) {
  const key = alg === "HS256" ? new TextEncoder().encode(secret) : await importJWK(jwk, alg);
  const header = kid ? { alg, kid, typ: "JWT" } : { alg, typ: "JWT" };
  const { aud, sub, ...rest } = claims;
  let jwt = new SignJWT(rest).setProtectedHeader(header).setIssuedAt().setExpirationTime(expiresIn);
  if (aud) jwt = jwt.setAudience(aud);
  if (sub) jwt = jwt.setSubject(sub);
  tokens.push(await jwt.sign(key));
}
process.stdout.write(JSON.stringify(tokens));
