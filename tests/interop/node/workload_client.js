// The SPIFFE Workload API through @grpc/grpc-js, for tests/workload_interop.rs.
//
// The client is generated at run time by @grpc/proto-loader from the
// repository's proto/spiffe/workloadapi.proto (no protoc), and talks to the
// agent at SPIFFE_ENDPOINT_SOCKET with grpc-js's defaults. Its packages come
// from NODE_PATH (tests/interop/setup.sh installs them under target/interop).
//
//   node workload_client.js entitled --proto FILE --spiffe-id ID --audience AUD
//     The five calls, each checked with Node's own crypto: FetchX509SVID (the
//     SPIFFE ID, the only URI SAN, the key matches the leaf), FetchX509Bundles
//     (each certificate of the chain is signed by the next, the last by a
//     bundle authority), FetchJWTSVID (the SPIFFE ID, the audience),
//     FetchJWTBundles (the token's signature verifies with the JWKS key its
//     kid names, a tampered token's does not), ValidateJWTSVID (accepted with
//     its claims, INVALID_ARGUMENT for another audience); and without the
//     `workload.spiffe.io: true` header, FetchX509SVID and FetchJWTSVID are
//     refused with INVALID_ARGUMENT, next to the same calls with it.
//
//   node workload_client.js denied --proto FILE --token JWT --audience AUD
//     The same five calls from a caller no entry matches: each must fail with
//     PERMISSION_DENIED (ValidateJWTSVID with a valid token).
//
// Prints one JSON object on stdout. Exits 1 when a check fails, naming it on
// stderr; the JSON then has "ok": false and the failed check.

'use strict';

const crypto = require('node:crypto');
const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// Every call has a deadline, so a hung agent fails the test rather than stalls it.
const TIMEOUT_MS = 10_000;
const SECURITY_HEADER = 'workload.spiffe.io';

class CheckFailed extends Error {}

function check(condition, what) {
  if (!condition) throw new CheckFailed(what);
}

function workloadApiClient(protoFile) {
  const definition = protoLoader.loadSync(protoFile, {
    keepCase: true,
    defaults: true,
    longs: String,
    enums: String,
    oneofs: true,
  });
  const { SpiffeWorkloadAPI } = grpc.loadPackageDefinition(definition);
  const endpoint = process.env.SPIFFE_ENDPOINT_SOCKET;
  check(endpoint, 'SPIFFE_ENDPOINT_SOCKET is not set');
  return new SpiffeWorkloadAPI(endpoint, grpc.credentials.createInsecure());
}

function metadata(withHeader = true) {
  const md = new grpc.Metadata();
  if (withHeader) md.set(SECURITY_HEADER, 'true');
  return md;
}

function deadline() {
  return { deadline: Date.now() + TIMEOUT_MS };
}

function unary(client, method, request, withHeader = true) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata(withHeader), deadline(), (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

/** The first message of a server stream, which is then cancelled. */
function firstOfStream(client, method, request, withHeader = true) {
  return new Promise((resolve, reject) => {
    const call = client[method](request, metadata(withHeader), deadline());
    let settled = false;
    call.on('data', (message) => {
      if (settled) return;
      settled = true;
      resolve(message);
      call.cancel();
    });
    call.on('error', (error) => {
      if (!settled) {
        settled = true;
        reject(error);
      }
    });
    call.on('end', () => {
      if (!settled) {
        settled = true;
        reject(new Error(`${method}: the stream ended without a message`));
      }
    });
  });
}

/** The status name of a failed call (INVALID_ARGUMENT, ...), or OK. */
async function outcome(promise) {
  try {
    await promise;
    return 'OK';
  } catch (error) {
    return typeof error.code === 'number' ? grpc.status[error.code] : `not gRPC: ${error}`;
  }
}

/** Splits concatenated DER certificates (the Workload API's chain and bundle encoding). */
function splitDer(buffer) {
  const certificates = [];
  let offset = 0;
  while (offset < buffer.length) {
    check(buffer[offset] === 0x30, `no DER SEQUENCE at byte ${offset}`);
    let length = buffer[offset + 1];
    let header = 2;
    if (length & 0x80) {
      const octets = length & 0x7f;
      check(octets >= 1 && octets <= 4, `DER length of ${octets} octets at byte ${offset}`);
      length = buffer.readUIntBE(offset + 2, octets);
      header += octets;
    }
    const end = offset + header + length;
    check(end <= buffer.length, `DER certificate at byte ${offset} runs past the end`);
    certificates.push(new crypto.X509Certificate(buffer.subarray(offset, end)));
    offset = end;
  }
  return certificates;
}

function uriSans(certificate) {
  return (certificate.subjectAltName || '')
    .split(', ')
    .filter((name) => name.startsWith('URI:'))
    .map((name) => name.slice('URI:'.length));
}

function currentlyValid(certificate, now) {
  return new Date(certificate.validFrom) <= now && now <= new Date(certificate.validTo);
}

/** Each certificate signed by the next, the last by one of `authorities`, all valid now. */
function chainVerifies(chain, authorities) {
  const now = new Date();
  for (let i = 0; i + 1 < chain.length; i++) {
    const issuer = chain[i + 1];
    if (!issuer.ca || !chain[i].checkIssued(issuer) || !chain[i].verify(issuer.publicKey)) {
      return false;
    }
  }
  const last = chain[chain.length - 1];
  const anchored = authorities.some(
    (root) => root.ca && currentlyValid(root, now) && last.checkIssued(root) && last.verify(root.publicKey),
  );
  return anchored && chain.every((certificate) => currentlyValid(certificate, now));
}

const JWS_ALGORITHMS = {
  ES256: { hash: 'sha256', dsaEncoding: 'ieee-p1363' },
  ES384: { hash: 'sha384', dsaEncoding: 'ieee-p1363' },
  RS256: { hash: 'sha256' },
  PS256: { hash: 'sha256', padding: crypto.constants.RSA_PKCS1_PSS_PADDING },
};

function decodeJwt(token) {
  const parts = token.split('.');
  check(parts.length === 3, 'the JWT-SVID is not a compact JWS');
  const json = (part) => JSON.parse(Buffer.from(part, 'base64url').toString());
  return { header: json(parts[0]), claims: json(parts[1]), parts };
}

/** Whether the token's signature verifies with the JWK from `jwks` its kid names. */
function jwsVerifies(token, jwks) {
  const { header, parts } = decodeJwt(token);
  const algorithm = JWS_ALGORITHMS[header.alg];
  check(algorithm, `JWS algorithm ${header.alg} is not one this client checks`);
  const jwk = jwks.keys.find((key) => key.kid === header.kid);
  check(jwk, `kid ${header.kid} is not in the JWT bundle`);
  const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
  return crypto.verify(
    algorithm.hash,
    Buffer.from(`${parts[0]}.${parts[1]}`),
    { key, dsaEncoding: algorithm.dsaEncoding, padding: algorithm.padding },
    Buffer.from(parts[2], 'base64url'),
  );
}

/** The same token with one claim changed and the signature kept. */
function tampered(token) {
  const { claims, parts } = decodeJwt(token);
  const changed = Buffer.from(JSON.stringify({ ...claims, sub: `${claims.sub}-x` })).toString('base64url');
  return `${parts[0]}.${changed}.${parts[2]}`;
}

function pem(certificate) {
  return certificate.toString();
}

async function entitled(client, spiffeId, audience) {
  const result = {};

  // FetchX509SVID
  const x509 = await firstOfStream(client, 'FetchX509SVID', {});
  check(x509.svids.length >= 1, 'FetchX509SVID answered no SVID');
  const svid = x509.svids[0];
  check(svid.spiffe_id === spiffeId, `X509-SVID is ${svid.spiffe_id}, not ${spiffeId}`);
  const chain = splitDer(svid.x509_svid);
  const leaf = chain[0];
  check(!leaf.ca, 'the leaf is a CA');
  const sans = uriSans(leaf);
  check(sans.length === 1 && sans[0] === spiffeId, `the leaf's URI SANs are ${sans}`);
  const key = crypto.createPrivateKey({ key: svid.x509_svid_key, format: 'der', type: 'pkcs8' });
  check(leaf.checkPrivateKey(key), "the X509-SVID's private key does not match its leaf");
  result.x509_svid = { spiffe_id: svid.spiffe_id, chain_pem: chain.map(pem) };

  // FetchX509Bundles: the chain verifies against the trust domain's bundle.
  const bundles = await firstOfStream(client, 'FetchX509Bundles', {});
  const trustDomain = `spiffe://${new URL(spiffeId).host}`;
  const bundleDer = bundles.bundles[trustDomain];
  check(bundleDer, `no X.509 bundle for ${trustDomain} in ${Object.keys(bundles.bundles)}`);
  const authorities = splitDer(bundleDer);
  check(chainVerifies(chain, authorities), 'the X509-SVID chain does not verify against the bundle');
  // Negative control: a chain cut short of its intermediate does not verify.
  if (chain.length > 1) {
    check(!chainVerifies([leaf], authorities), 'the leaf verified without its intermediate');
  }
  result.x509_bundle = { trust_domain: trustDomain, authorities_pem: authorities.map(pem) };

  // FetchJWTSVID
  const jwtAnswer = await unary(client, 'FetchJWTSVID', { audience: [audience], spiffe_id: '' });
  check(jwtAnswer.svids.length >= 1, 'FetchJWTSVID answered no SVID');
  const jwtSvid = jwtAnswer.svids[0];
  const token = jwtSvid.svid;
  const { claims } = decodeJwt(token);
  const aud = typeof claims.aud === 'string' ? [claims.aud] : claims.aud;
  check(jwtSvid.spiffe_id === spiffeId, `JWT-SVID is ${jwtSvid.spiffe_id}, not ${spiffeId}`);
  check(claims.sub === spiffeId, `JWT-SVID sub is ${claims.sub}`);
  check(aud.length === 1 && aud[0] === audience, `JWT-SVID aud is ${JSON.stringify(claims.aud)}`);
  check(claims.exp * 1000 > Date.now(), 'the JWT-SVID has expired');
  result.jwt_svid = { spiffe_id: jwtSvid.spiffe_id, audience: aud, token };

  // FetchJWTBundles: a JWKS whose key verifies the token, and not a tampered one.
  const jwtBundles = await firstOfStream(client, 'FetchJWTBundles', {});
  const jwksBytes = jwtBundles.bundles[trustDomain];
  check(jwksBytes, `no JWT bundle for ${trustDomain}`);
  const jwks = JSON.parse(Buffer.from(jwksBytes).toString());
  check(jwsVerifies(token, jwks), "the JWT-SVID's signature does not verify with the JWT bundle");
  check(!jwsVerifies(tampered(token), jwks), 'a tampered JWT-SVID verified');
  result.jwt_bundle = { jwks };

  // ValidateJWTSVID: accepted with its claims, refused for another audience.
  const validated = await unary(client, 'ValidateJWTSVID', { audience, svid: token });
  check(validated.spiffe_id === spiffeId, `validated as ${validated.spiffe_id}`);
  const sub = validated.claims && validated.claims.fields.sub;
  check(sub && sub.stringValue === spiffeId, `validated claims say sub ${JSON.stringify(sub)}`);
  const wrongAudience = await outcome(
    unary(client, 'ValidateJWTSVID', { audience: `${audience}-other`, svid: token }),
  );
  check(wrongAudience === 'INVALID_ARGUMENT', `ValidateJWTSVID for another audience: ${wrongAudience}`);
  result.validate = { accepted: validated.spiffe_id, wrong_audience: wrongAudience };

  // The security header: the same calls without it are refused.
  const header = {
    FetchX509SVID: {
      with: await outcome(firstOfStream(client, 'FetchX509SVID', {}, true)),
      without: await outcome(firstOfStream(client, 'FetchX509SVID', {}, false)),
    },
    FetchJWTSVID: {
      with: await outcome(unary(client, 'FetchJWTSVID', { audience: [audience] }, true)),
      without: await outcome(unary(client, 'FetchJWTSVID', { audience: [audience] }, false)),
    },
  };
  for (const [method, seen] of Object.entries(header)) {
    check(seen.with === 'OK', `${method} with the security header: ${seen.with}`);
    check(seen.without === 'INVALID_ARGUMENT', `${method} without the security header: ${seen.without}`);
  }
  result.security_header = header;
  return result;
}

async function denied(client, token, audience) {
  const calls = {
    FetchX509SVID: () => firstOfStream(client, 'FetchX509SVID', {}),
    FetchX509Bundles: () => firstOfStream(client, 'FetchX509Bundles', {}),
    FetchJWTSVID: () => unary(client, 'FetchJWTSVID', { audience: [audience] }),
    FetchJWTBundles: () => firstOfStream(client, 'FetchJWTBundles', {}),
    ValidateJWTSVID: () => unary(client, 'ValidateJWTSVID', { audience, svid: token }),
  };
  const outcomes = {};
  for (const [name, call] of Object.entries(calls)) {
    outcomes[name] = await outcome(call());
  }
  const wrong = Object.entries(outcomes).filter(([, code]) => code !== 'PERMISSION_DENIED');
  return {
    result: { calls: outcomes },
    failure: wrong.length ? `not PERMISSION_DENIED: ${JSON.stringify(Object.fromEntries(wrong))}` : null,
  };
}

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      proto: { type: 'string' },
      'spiffe-id': { type: 'string' },
      audience: { type: 'string' },
      token: { type: 'string' },
    },
  });
  const mode = positionals[0];
  const output = {
    client: '@grpc/grpc-js',
    versions: {
      node: process.versions.node,
      '@grpc/grpc-js': require('@grpc/grpc-js/package.json').version,
      '@grpc/proto-loader': require('@grpc/proto-loader/package.json').version,
    },
    ok: true,
  };
  let failure = null;
  let client = null;
  try {
    check(['entitled', 'denied'].includes(mode), `mode must be entitled or denied, not ${mode}`);
    check(values.proto && values.audience, '--proto and --audience are required');
    client = workloadApiClient(values.proto);
    if (mode === 'entitled') {
      check(values['spiffe-id'], '--spiffe-id is required');
      Object.assign(output, await entitled(client, values['spiffe-id'], values.audience));
    } else {
      check(values.token, '--token is required');
      const { result, failure: refused } = await denied(client, values.token, values.audience);
      Object.assign(output, result);
      failure = refused;
    }
  } catch (error) {
    console.error(error.stack || String(error));
    const code = typeof error.code === 'number' ? ` (gRPC code ${grpc.status[error.code]})` : '';
    failure = `${error.message}${code}`;
  } finally {
    if (client) client.close();
  }
  if (failure) {
    Object.assign(output, { ok: false, failed: failure });
    console.error(`grpc-js client failed: ${failure}`);
  }
  process.stdout.write(`${JSON.stringify(output)}\n`);
  process.exitCode = failure ? 1 : 0;
}

main();
